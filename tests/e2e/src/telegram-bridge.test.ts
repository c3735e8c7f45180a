// The Telegram bridge (grammY) as a companion device of a Pairwise account, against a local fake
// Bot API over real HTTP: text, photos, voice notes and replies both ways, the "not end-to-end
// encrypted beyond this bridge" notice, a 429 retried after retry_after, messages kept across a
// stop, and polling stopped for good by a second poller (409) or a revoked token (401).
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  BRIDGE_NOTICE,
  TelegramBridge,
  createTelegramBridge,
} from "@pairwise/interop-adapters/telegram";
import { InteropError } from "@pairwise/interop-adapters";
import { describe, expect, it } from "vitest";
import { startFakeTelegram, type FakeTelegram } from "./fake-telegram.ts";
import { account, home, link, until, useRelay } from "./support.ts";

const relay = useRelay();
const CHAT = -100_123_456;

/**
 * A Pairwise side that records the texts it takes and what each replies to, and refuses them
 * while `open()` is false.
 */
function textSide(open: () => boolean) {
  const taken: string[] = [];
  const replies: Array<string | undefined> = [];
  const side = {
    sendText: (_chat: string, text: string, o: { replyTo?: string }) => {
      if (!open()) return Promise.reject(new Error("not connected yet"));
      taken.push(text);
      replies.push(o.replyTo);
      return Promise.resolve(`id-${String(taken.length)}`);
    },
    sendFile: () => Promise.reject(new Error("no files here")),
  };
  return { side, taken, replies };
}

/** A bridge of CHAT on the fake Bot API, polling in 1 s long polls. */
const pollingOptions = (tg: FakeTelegram) => ({
  token: tg.token,
  apiRoot: tg.apiRoot,
  chats: [{ pairwise: "side-chat", telegram: CHAT }],
  pollTimeoutSeconds: 1,
});

describe("Telegram bridge", () => {
  it("round-trips text, a photo, a voice note and replies, and tells the Pairwise side it is not end-to-end encrypted", async () => {
    const tg = await startFakeTelegram([CHAT]);
    const shop = await account(relay(), "shop");
    const bridgeDevice = await link(relay(), shop, "telegram-bridge");
    const bob = await account(relay(), "bobtg");
    await bob.startReceiving();
    const bridge = createTelegramBridge({
      device: bridgeDevice,
      token: tg.token,
      apiRoot: tg.apiRoot,
      chats: [{ pairwise: "bobtg", telegram: CHAT }],
      pollTimeoutSeconds: 1,
    });
    const states: string[] = [];
    bridge.onState((s) => states.push(s.state));
    // The first photo upload is rate limited: auto-retry waits retry_after and sends again.
    tg.rateLimit("sendPhoto", 1);
    await bridge.start();
    expect(bridge.capabilities.endToEnd).toBe(false);
    await until(() => bob.history("shop").some((m) => m.text === BRIDGE_NOTICE), 20_000);

    // Pairwise -> Telegram
    const firstId = await bob.sendText("shop", "hi from pairwise");
    await until(() => tg.messages(CHAT).some((m) => m.text === "bobtg: hi from pairwise"), 20_000);
    const dir = home("tg-files");
    const photo = randomBytes(120_000);
    writeFileSync(join(dir, "cat.jpg"), photo);
    await bob.sendFile("shop", join(dir, "cat.jpg"), { caption: "look" });
    await until(() => tg.messages(CHAT).some((m) => m.photo !== undefined), 30_000);
    const sentPhoto = tg.messages(CHAT).find((m) => m.photo)!;
    expect(sentPhoto.caption).toBe("bobtg: look");
    expect(tg.file(sentPhoto.photo!.at(-1)!.file_id)?.equals(photo)).toBe(true);
    expect(tg.calls.filter((c) => c.method === "sendPhoto").map((c) => c.status)).toEqual([
      429, 200,
    ]);
    const voice = randomBytes(40_000);
    writeFileSync(join(dir, "note.ogg"), voice);
    await bob.sendFile("shop", join(dir, "note.ogg"));
    await until(() => tg.messages(CHAT).some((m) => m.voice !== undefined), 30_000);
    expect(tg.file(tg.messages(CHAT).find((m) => m.voice)!.voice!.file_id)?.equals(voice)).toBe(
      true,
    );

    // Telegram -> Pairwise, a reply to the bridged first message keeps its reference.
    const bridgedFirst = tg.messages(CHAT).find((m) => m.text === "bobtg: hi from pairwise")!;
    const tgText = tg.post(CHAT, { text: "hello from telegram" }, bridgedFirst.message_id);
    await until(
      () => bob.history("shop").some((m) => m.text === "Tanya (Telegram): hello from telegram"),
      20_000,
    );
    const got = bob
      .history("shop")
      .find((m) => m.text === "Tanya (Telegram): hello from telegram")!;
    expect(got.replyTo).toBe(firstId);
    const tgPhoto = randomBytes(90_000);
    tg.post(CHAT, { photo: tgPhoto, caption: "from tg" });
    const tgVoice = randomBytes(30_000);
    tg.post(CHAT, { voice: tgVoice });
    await until(
      () => bob.history("shop").filter((m) => m.file !== undefined && !m.outgoing).length >= 2,
      30_000,
    );
    await bob.drained(30_000);
    const files = bob.history("shop").filter((m) => m.file !== undefined && !m.outgoing);
    const photoMsg = files.find((m) => m.file!.endsWith("photo.jpg"))!;
    expect(photoMsg.text).toBe("Tanya (Telegram): from tg");
    expect(readFileSync(photoMsg.file!).equals(tgPhoto)).toBe(true);
    expect(
      readFileSync(files.find((m) => m.file!.endsWith("voice.ogg"))!.file!).equals(tgVoice),
    ).toBe(true);

    // A Pairwise reply to a Telegram message becomes a Telegram reply to it.
    await bob.sendText("shop", "got it", { replyTo: got.id });
    await until(() => tg.messages(CHAT).some((m) => m.text === "bobtg: got it"), 20_000);
    expect(
      tg.messages(CHAT).find((m) => m.text === "bobtg: got it")!.reply_to_message?.message_id,
    ).toBe(tgText.message_id);

    // Every call had a shape the API accepts (the 429 aside).
    expect(tg.calls.filter((c) => c.status !== 200 && c.status !== 429)).toEqual([]);
    await bridge.stop();
    expect(states).toContain("connected");
    expect(states.at(-1)).toBe("stopped");
    for (const d of [shop, bridgeDevice, bob]) await d.close();
    await tg.close();
  }, 120_000);

  it("passes a Telegram message on once the Pairwise side can take it, instead of dropping it", async () => {
    const tg = await startFakeTelegram([CHAT]);
    const taken: string[] = [];
    let refusals = 2;
    // A Pairwise side that cannot send at first (its device is reconnecting, say).
    const side = {
      sendText: (_chat: string, text: string) => {
        if (refusals > 0) {
          refusals--;
          return Promise.reject(new Error("not connected yet"));
        }
        taken.push(text);
        return Promise.resolve(`id-${String(taken.length)}`);
      },
      sendFile: () => Promise.reject(new Error("no files here")),
    };
    const bridge = new TelegramBridge(side, {
      token: tg.token,
      apiRoot: tg.apiRoot,
      chats: [{ pairwise: "side-chat", telegram: CHAT }],
      pollTimeoutSeconds: 1,
    });
    const states: string[] = [];
    bridge.onState((s) => states.push(s.state));
    await bridge.start();
    tg.post(CHAT, { text: "are you there?" });
    await until(() => taken.length >= 2, 20_000);
    expect(taken).toEqual([BRIDGE_NOTICE, "Tanya (Telegram): are you there?"]);
    expect(states).toContain("backing-off");
    expect(states.at(-1)).toBe("connected");
    await bridge.stop();
    await tg.close();
  }, 60_000);

  it("keeps a message it could not pass on when stopped, and passes it on after a restart, once", async () => {
    const tg = await startFakeTelegram([CHAT]);
    let open = true;
    const { side, taken } = textSide(() => open);
    const options = pollingOptions(tg);
    const first = new TelegramBridge(side, options);
    const states: string[] = [];
    first.onState((s) => states.push(s.state));
    await first.start();
    tg.post(CHAT, { text: "one" });
    await until(() => taken.includes("Tanya (Telegram): one"), 20_000);
    open = false;
    tg.post(CHAT, { text: "two" });
    await until(() => states.includes("backing-off"), 20_000);
    // Stopped while "two" waits for its next try: it must not be confirmed to Telegram.
    await first.stop();
    expect(taken).not.toContain("Tanya (Telegram): two");
    open = true;
    const second = new TelegramBridge(side, options);
    await second.start();
    await until(() => taken.includes("Tanya (Telegram): two"), 20_000);
    await second.stop();
    // "one" was confirmed when the first bridge stopped: it did not come back.
    expect(taken.filter((t) => t.startsWith("Tanya"))).toEqual([
      "Tanya (Telegram): one",
      "Tanya (Telegram): two",
    ]);
    await tg.close();
  }, 60_000);

  it("stops polling, refused, when another poller takes the bot over or its token is revoked", async () => {
    const tg = await startFakeTelegram([CHAT]);
    const { side, taken } = textSide(() => true);
    const options = pollingOptions(tg);
    const first = new TelegramBridge(side, options);
    await first.start();
    tg.post(CHAT, { text: "two" });
    await until(() => taken.includes("Tanya (Telegram): two"), 10_000);
    // A second bridge on the same bot: Telegram ends the first one's poll with 409. Polling on
    // would only keep ending each other's polls; the first stops and says so.
    const second = new TelegramBridge(side, options);
    await second.start();
    await until(() => first.state === "refused", 10_000);
    expect(second.state).toBe("connected");
    tg.post(CHAT, { text: "three" });
    await until(() => taken.includes("Tanya (Telegram): three"), 10_000);
    // Stopping the pushed-out bridge leaves the other one polling (no getUpdates of its own).
    await first.stop();
    await new Promise((r) => setTimeout(r, 300));
    tg.post(CHAT, { text: "four" });
    await until(() => taken.includes("Tanya (Telegram): four"), 10_000);
    expect(second.state).toBe("connected");
    // The token revoked: the next poll gets 401 and the second stops too.
    tg.revokeToken();
    await until(() => second.state === "refused", 10_000);
    const polls = tg.calls.filter((c) => c.method === "getUpdates").length;
    await new Promise((r) => setTimeout(r, 1500));
    expect(tg.calls.filter((c) => c.method === "getUpdates")).toHaveLength(polls);
    await second.stop();
    expect(taken.filter((t) => t.startsWith("Tanya"))).toEqual([
      "Tanya (Telegram): two",
      "Tanya (Telegram): three",
      "Tanya (Telegram): four",
    ]);
    await tg.close();
  }, 60_000);

  it("keeps the reference of a reply to a message bridged before a restart", async () => {
    const tg = await startFakeTelegram([CHAT]);
    const { side, replies } = textSide(() => true);
    const options = { ...pollingOptions(tg), messageIdsFile: join(home("tg-ids"), "ids.db") };
    const first = new TelegramBridge(side, options);
    await first.start();
    await first.forward({ id: "pw-1", chat: "side-chat", fromAccount: "shop", text: "hello" });
    await first.stop();
    const bridged = tg.messages(CHAT).find((m) => m.text === "shop: hello");
    expect(bridged).toBeDefined();
    const second = new TelegramBridge(side, options);
    await second.start();
    tg.post(CHAT, { text: "hi back" }, bridged?.message_id);
    await until(() => replies.includes("pw-1"), 10_000);
    await second.stop();
    await tg.close();
  }, 30_000);

  it("refuses a bad token with a typed error", async () => {
    const tg = await startFakeTelegram([CHAT]);
    const shop = await account(relay(), "shop2");
    expect(() => createTelegramBridge({ device: shop, token: "not a token", chats: [] })).toThrow(
      InteropError,
    );
    const bridge = createTelegramBridge({
      device: shop,
      token: "123:wrong",
      apiRoot: tg.apiRoot,
      chats: [{ pairwise: "x", telegram: CHAT }],
    });
    const err = await bridge.start().catch((e: unknown) => e);
    expect(InteropError.is(err, "BridgeFailed")).toBe(true);
    expect(bridge.state).toBe("refused");
    await shop.close();
    await tg.close();
  }, 30_000);
});
