// Group membership updates reach plugins (`group:join`), handled once per group revision even
// when the host is killed right after replying and restarted.
import { join } from "node:path";
import { approveLink, createGroup, updateGroup, type StoredMessage } from "@pairwise/client";
import { describe, expect, it } from "vitest";
import type { BotSnapshot } from "../src/index.ts";
import {
  ADMIN_TOKEN,
  account,
  customer,
  getJson,
  packageRoot,
  spawnHost,
  startRelay,
  tempDir,
  until,
} from "./support.ts";

describe("a bot added to a group", () => {
  it("greets the group exactly once, also across a SIGKILL and restart", async () => {
    const server = await startRelay();
    const owner = await account(server, "greetco");
    const ownerCopies: StoredMessage[] = [];
    owner.on("message", (m) => ownerCopies.push(m));
    await owner.startReceiving();
    const dir = tempDir("group-join");
    const config = {
      http: { host: "127.0.0.1", port: 0 },
      adminToken: ADMIN_TOKEN,
      logLevel: "warn",
      bots: [
        {
          name: "greeter",
          server: server.url,
          stateDir: join(dir, "greeter"),
          plugins: [
            [join(packageRoot, "test/fixtures/group-greeter-plugin.mjs"), { pauseMs: 1500 }],
          ],
        },
      ],
    };
    const bots = async (url: string) => (await getJson(`${url}/api/bots`)) as BotSnapshot[];

    const first = spawnHost(config, dir);
    const url1 = await first.url;
    await until(async () => (await bots(url1))[0]?.linkCode !== undefined, 60_000, "a link code");
    const code = (await bots(url1))[0]?.linkCode ?? "";
    await approveLink(owner, code, () => Promise.resolve(true), { historySync: false });
    await until(async () => (await bots(url1))[0]?.state === "connected", 60_000, "connected");

    // Another account creates a group with the bot's business account in it.
    const carol = await customer(server, "gj-carol");
    const group = await createGroup(carol.device, "launch", ["greetco"]);
    const chat = `group:${group.id}`;
    const texts = () => carol.inbox.filter((m) => m.chat === chat).map((m) => m.text);
    await until(() => texts().length >= 1, 60_000, "the greeting");
    // Killed right after replying, while the handling is held open: neither recorded as handled
    // nor acknowledged, so the restarted host finds the notice in the device's inbox again.
    first.child.kill("SIGKILL");
    await first.exited;

    const second = spawnHost(config, dir);
    const url2 = await second.url;
    await until(async () => (await bots(url2))[0]?.state === "connected", 60_000, "reconnected");
    // A later change in the same chat: per-chat order means the earlier one was dealt with.
    const dave = await customer(server, "gj-dave");
    await updateGroup(carol.device, group.id, { add: ["gj-dave"] });
    await until(() => texts().length >= 2, 60_000, "the welcome");
    expect(texts()).toEqual(["hello group", "welcome gj-dave"]);
    expect(
      carol.inbox.filter((m) => m.chat === chat).every((m) => m.fromAccount === "greetco"),
    ).toBe(true);
    await until(() => dave.inbox.some((m) => m.chat === chat), 60_000, "dave gets the welcome");
    expect(dave.inbox.filter((m) => m.chat === chat).map((m) => m.text)).toEqual([
      "welcome gj-dave",
    ]);
    // The account's primary gets the bot's group messages as its own (sync), once each.
    await until(
      () => ownerCopies.filter((m) => m.chat === chat).length >= 2,
      60_000,
      "the owner's copies",
    );
    expect(ownerCopies.filter((m) => m.chat === chat).map((m) => m.text)).toEqual([
      "hello group",
      "welcome gj-dave",
    ]);
    const after = (await bots(url2))[0];
    expect(after?.counters.errors).toBe(0);

    second.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);
    for (const d of [carol.device, dave.device, owner]) await d.close();
    await server.close();
  }, 240_000);
});
