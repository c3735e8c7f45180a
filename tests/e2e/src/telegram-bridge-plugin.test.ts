// The bot host's `telegram-bridge` plugin: a bot of a business account (a linked companion)
// bridges a customer's Pairwise chat to a Telegram chat on a local fake Bot API.
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { approveLink } from "@pairwise/client";
import { parseConfig, startBotHost } from "@pairwise/bot-host";
import { BRIDGE_NOTICE } from "@pairwise/interop-adapters/telegram";
import Database from "better-sqlite3";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { startFakeTelegram } from "./fake-telegram.ts";
import { account, home, until, useRelay } from "./support.ts";

const relay = useRelay();
const CHAT = -100_777;

describe("bot host plugin telegram-bridge", () => {
  it("bridges a chat both ways with a voice note and a photo, after the not-end-to-end notice", async () => {
    const tg = await startFakeTelegram([CHAT]);
    const owner = await account(relay(), "bridgeco");
    const customer = await account(relay(), "carla");
    await customer.startReceiving();
    const stateDir = home("tg-bot");
    const host = await startBotHost({
      config: parseConfig(
        {
          http: { host: "127.0.0.1", port: 0 },
          adminToken: "test-admin-token-0123456789",
          logLevel: "silent",
          bots: [
            {
              name: "tg",
              server: relay().url,
              stateDir,
              plugins: [
                [
                  "telegram-bridge",
                  {
                    token: tg.token,
                    apiRoot: tg.apiRoot,
                    chats: [{ pairwise: "carla", telegram: CHAT }],
                    pollTimeoutSeconds: 1,
                    filesDir: home("tg-files"),
                  },
                ],
              ],
            },
          ],
        },
        home("tg-config"),
      ),
      logger: pino({ level: "silent" }),
    });
    const bot = host.bot("tg");
    await until(() => bot.snapshot().linkCode !== undefined, 30_000);
    await approveLink(owner, bot.snapshot().linkCode ?? "", () => Promise.resolve(true), {
      historySync: false,
    });
    await until(() => bot.currentState === "connected", 30_000);

    const voice = randomBytes(25_000);
    const dir = home("carla-files");
    writeFileSync(join(dir, "memo.ogg"), voice);
    await customer.sendFile("bridgeco", join(dir, "memo.ogg"));
    await until(() => tg.messages(CHAT).some((m) => m.voice !== undefined), 30_000);
    const sent = tg.messages(CHAT).find((m) => m.voice);
    expect(tg.file(sent?.voice?.file_id ?? "")?.equals(voice)).toBe(true);
    await until(() => customer.history("bridgeco").some((m) => m.text === BRIDGE_NOTICE), 20_000);

    const photo = randomBytes(50_000);
    tg.post(CHAT, { photo, caption: "receipt" });
    await until(
      () => customer.history("bridgeco").some((m) => m.file !== undefined && !m.outgoing),
      30_000,
    );
    await customer.drained(30_000);
    const got = customer.history("bridgeco").find((m) => m.file !== undefined && !m.outgoing);
    expect(got?.text).toBe("Tanya (Telegram): receipt");
    expect(readFileSync(got?.file ?? "").equals(photo)).toBe(true);
    // The notice came before anything bridged.
    const texts = customer.history("bridgeco").filter((m) => !m.outgoing);
    expect(texts[0]?.text).toBe(BRIDGE_NOTICE);
    // A reply on the Pairwise side to the bridged photo is a reply to it on Telegram.
    await customer.sendText("bridgeco", "thanks", { replyTo: got?.id ?? "" });
    await until(() => tg.messages(CHAT).some((m) => m.text === "carla: thanks"), 30_000);
    const answer = tg.messages(CHAT).find((m) => m.text === "carla: thanks");
    const photoMessage = tg.messages(CHAT).find((m) => m.photo !== undefined);
    expect(answer?.reply_to_message?.message_id).toBe(photoMessage?.message_id);

    await host.stop();
    // The message ids it matched (for replies) are kept in the plugin's directory, across restarts.
    const ids = new Database(join(stateDir, "plugins", "telegram-bridge", "message-ids.db"), {
      readonly: true,
    });
    const key = `t:${String(CHAT)}:${String(sent?.message_id)}`;
    expect(ids.prepare("SELECT value FROM message_ids WHERE key = ?").get(key)).toBeDefined();
    ids.close();
    for (const d of [owner, customer]) await d.close();
    await tg.close();
  }, 120_000);
});
