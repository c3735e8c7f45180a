// The host against a real relay: linking by link code, echo replies in order per chat under
// concurrency, an isolated plugin crash, per-chat sessions, and remote logout then relink.
import {
  createGroup,
  markRead,
  sendGroupText,
  unlinkDevice,
  type PairwiseDevice,
} from "@pairwise/client";
import type { RunningServer } from "@pairwise/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BotHostError, definePlugin, type RunningBotHost } from "../src/index.ts";
import { echo } from "../src/plugins/echo.ts";
import { help } from "../src/plugins/help.ts";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { resolveConfig, startServer } from "@pairwise/server";
import pino from "pino";
import { account, customer, linkBot, startHost, startRelay, tempDir, until } from "./support.ts";

let server: RunningServer;
let owner: PairwiseDevice;
let host: RunningBotHost;

const counter = definePlugin({
  name: "counter",
  setup(bot) {
    bot.command({ name: "count", description: "counts your messages" }, async (ctx) => {
      const n = (typeof ctx.session.n === "number" ? ctx.session.n : 0) + 1;
      ctx.session.n = n;
      await ctx.reply(`count ${String(n)}`);
    });
  },
});

const receipts: Array<{ kind: string; chat: string; ids: string[] }> = [];
const receiptLog = definePlugin({
  name: "receipt-log",
  setup(bot) {
    bot.on("receipt", (ctx) => {
      receipts.push({ kind: ctx.receipt.kind, chat: ctx.chat.id, ids: ctx.receipt.messageIds });
    });
  },
});

const files = definePlugin({
  name: "files",
  setup(bot) {
    bot.command("file", (ctx) =>
      ctx.replyWithFile(Readable.from([Buffer.from("hello from the bot")]), {
        fileName: "note.txt",
        caption: "your file",
      }),
    );
    bot.on("message:file", async (ctx) => {
      await ctx.reply(`got ${String(readFileSync(ctx.message.file).length)} bytes`);
    });
  },
});

const boom = definePlugin({
  name: "boom",
  middleware: (ctx, next) => {
    if (ctx.message?.text === "boom") throw new Error("this plugin is broken");
    return next();
  },
});

beforeAll(async () => {
  server = await startRelay();
  owner = await account(server, "acme");
  host = await startHost(server, [{ name: "support", concurrency: 2 }], {
    support: [receiptLog, files, boom, counter, help(), echo({ prefix: "echo: " })],
  });
  expect(host.bot("support").currentState).not.toBe("connected");
  await linkBot(host, "support", owner);
});

afterAll(async () => {
  await host.stop();
  await owner.close();
  await server.close();
});

describe("bot host", () => {
  it("stops promptly while a bot still waits for its owner to link it", async () => {
    const waiting = await startHost(server, [{ name: "waiting", plugins: ["echo"] }]);
    await until(() => waiting.bot("waiting").snapshot().linkCode !== undefined, 30_000, "a code");
    await waiting.stop(); // bounded by the test timeout, far below the link code's lifetime
    expect(waiting.bot("waiting").currentState).toBe("unlinked");
  });

  it("refuses a second host on a state directory a running bot owns", async () => {
    const stateDir = tempDir("state-owned");
    const first = await startHost(server, [{ name: "owner", stateDir }]);
    try {
      const err: unknown = await startHost(server, [{ name: "twin", stateDir }]).catch(
        (e: unknown) => e,
      );
      expect(BotHostError.is(err, "StorageFailure")).toBe(true);
      expect((err as Error).message).toContain("in use by another process");
      // The owner goes on: it still shows its link code.
      await until(() => first.bot("owner").snapshot().linkCode !== undefined, 20_000, "a code");
    } finally {
      await first.stop();
    }
    // Once the first host stopped, the directory opens again.
    const again = await startHost(server, [{ name: "owner", stateDir }]);
    await again.stop();
  }, 30_000);

  it("shows the bot linked as a device of the owner's account", async () => {
    const snap = host.bot("support").snapshot();
    expect(snap.account).toBe("acme");
    expect(snap.deviceId).toBeGreaterThan(1);
    const devices = await owner.devices();
    expect(devices.map((d) => d.name)).toContain("bot support");
  });

  it("warns when the account's primary has been offline for 12 days or more", async () => {
    const away = await account(server, "awayco");
    const DAY = 86_400_000;
    const later = await startHost(
      server,
      [{ name: "later" }],
      undefined,
      () => Date.now() + 13 * DAY,
    );
    try {
      await linkBot(later, "later", away);
      await until(() => later.bot("later").snapshot().warnings.length > 0, 30_000, "a warning");
      expect(later.bot("later").snapshot().warnings[0]).toMatch(
        /primary has been offline for 13 days: open it within 1 day or this bot is logged out/,
      );
      expect(later.bot("later").currentState).toBe("connected");
    } finally {
      await later.stop();
      await away.close();
    }
  });

  it("answers many chats concurrently, each strictly in order", async () => {
    const customers = await Promise.all(["carol", "dave", "erin"].map((n) => customer(server, n)));
    const N = 8;
    await Promise.all(
      customers.map(async (c, ci) => {
        for (let i = 0; i < N; i++) await c.device.sendText("acme", `c${String(ci)} m${String(i)}`);
      }),
    );
    await until(() => customers.every((c) => c.inbox.length >= N), 60_000, "all echoes");
    customers.forEach((c, ci) => {
      expect(c.inbox.map((m) => m.text)).toEqual(
        Array.from({ length: N }, (_, i) => `echo: c${String(ci)} m${String(i)}`),
      );
      expect(c.inbox.every((m) => m.fromAccount === "acme")).toBe(true);
    });
    await Promise.all(customers.map((c) => c.device.close()));
  });

  it("answers in a group the business account is a member of", async () => {
    const k = await customer(server, "kate");
    const l = await customer(server, "leo");
    const group = await createGroup(k.device, "shop talk", ["leo", "acme"]);
    await sendGroupText(k.device, group.id, "group hello");
    await until(() => k.inbox.length >= 1 && l.inbox.length >= 2, 30_000, "the group echo");
    expect(k.inbox.map((m) => [m.chat, m.fromAccount, m.text])).toEqual([
      [`group:${group.id}`, "acme", "echo: group hello"],
    ]);
    expect(l.inbox.map((m) => m.text)).toEqual(["group hello", "echo: group hello"]);
    await Promise.all([k.device.close(), l.device.close()]);
  });

  it("receives files and replies with a file from a stream", async () => {
    const f = await customer(server, "fiona");
    const upload = join(tempDir("upload"), "invoice.pdf");
    writeFileSync(upload, Buffer.alloc(3000, 7));
    await f.device.sendFile("acme", upload);
    await f.device.sendText("acme", "/file");
    await until(() => f.inbox.length >= 2, 30_000, "two answers");
    expect(f.inbox[0]?.text).toBe("got 3000 bytes");
    expect(f.inbox[1]?.text).toBe("your file");
    expect(readFileSync(f.inbox[1]?.file ?? "", "utf8")).toBe("hello from the bot");
    await f.device.close();
  });

  it("hands delivery and read receipts for its replies to plugins", async () => {
    const r = await customer(server, "rita");
    await r.device.sendText("acme", "receipt please");
    await until(() => r.inbox.length >= 1, 30_000, "the echo");
    const reply = r.inbox[0]?.id ?? "";
    await until(
      () => receipts.some((x) => x.kind === "delivered" && x.ids.includes(reply)),
      30_000,
      "a delivery receipt",
    );
    await markRead(r.device, "acme");
    await until(
      () => receipts.some((x) => x.kind === "read" && x.ids.includes(reply)),
      30_000,
      "a read receipt",
    );
    expect(receipts.filter((x) => x.ids.includes(reply)).map((x) => [x.kind, x.chat])).toEqual([
      ["delivered", "rita"],
      ["read", "rita"],
    ]);
    await r.device.close();
  });

  it("isolates a crashing plugin: the message still reaches later plugins", async () => {
    const c = await customer(server, "frank");
    const errorsBefore = host.bot("support").counters.errors;
    await c.device.sendText("acme", "boom");
    await c.device.sendText("acme", "after");
    await until(() => c.inbox.length >= 2, 30_000, "two echoes");
    expect(c.inbox.map((m) => m.text)).toEqual(["echo: boom", "echo: after"]);
    expect(host.bot("support").counters.errors).toBe(errorsBefore + 1);
    await c.device.close();
  });

  it("keeps per-chat sessions and lists commands with /help", async () => {
    const g = await customer(server, "gina");
    const h = await customer(server, "hank");
    await g.device.sendText("acme", "/count");
    await g.device.sendText("acme", "/count");
    await h.device.sendText("acme", "/count");
    await g.device.sendText("acme", "/help");
    await until(() => g.inbox.length >= 3 && h.inbox.length >= 1, 30_000, "answers");
    expect(g.inbox.map((m) => m.text)).toEqual([
      "count 1",
      "count 2",
      "Commands:\n/file\n/count - counts your messages\n/help - lists the commands",
    ]);
    expect(h.inbox.map((m) => m.text)).toEqual(["count 1"]);
    await Promise.all([g.device.close(), h.device.close()]);
  });

  it("logged out remotely by the owner: shows a fresh link code, relinks and answers again", async () => {
    const bot = host.bot("support");
    const states: string[] = [];
    bot.on("change", () => {
      if (states.at(-1) !== bot.currentState) states.push(bot.currentState);
    });
    const oldDevice = bot.snapshot().deviceId ?? 0;
    await unlinkDevice(owner, oldDevice);
    await until(() => bot.snapshot().linkCode !== undefined, 30_000, "a fresh link code");
    expect(states).toContain("logged-out");
    expect(bot.currentState).toBe("unlinked");
    expect((await owner.devices()).map((d) => d.id)).not.toContain(oldDevice);
    await linkBot(host, "support", owner);
    expect(bot.snapshot().deviceId).not.toBe(oldDevice);
    const c = await customer(server, "ivan");
    await c.device.sendText("acme", "hello again");
    await until(() => c.inbox.length >= 1, 30_000, "an echo after relinking");
    expect(c.inbox[0]?.text).toBe("echo: hello again");
    await c.device.close();
  });

  it("turns disconnected while the relay is down, and a reply cut off by it is sent once back", async () => {
    const dataDir = tempDir("flaky-relay");
    const start = (port: number) =>
      startServer({
        config: resolveConfig({ dataDir, host: "127.0.0.1", port, logLevel: "silent" }),
        logger: pino({ level: "silent" }),
      });
    let relay = await start(0);
    const port = relay.port;
    const biz = await account(relay, "flakyco");
    // Holds the first handling until the test opens the gate (while the relay is down).
    let entered = false;
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const held = definePlugin({
      name: "held",
      middleware: async (ctx, next) => {
        if (!entered) {
          entered = true;
          await gate;
        }
        await ctx.reply(`held: ${ctx.message?.text ?? ""}`);
        await next();
      },
    });
    const flaky = await startHost(relay, [{ name: "flaky" }], { flaky: [held] });
    try {
      await linkBot(flaky, "flaky", biz);
      const c = await customer(relay, "flaky-customer");
      await c.device.sendText("flakyco", "still there?");
      await until(() => entered, 30_000, "the handling to start");
      await relay.close();
      await until(() => flaky.bot("flaky").currentState === "disconnected", 30_000, "disconnected");
      open(); // the reply now fails for lack of a connection
      relay = await start(port); // same data, same port: the devices' stored server
      await until(() => flaky.bot("flaky").currentState === "connected", 90_000, "reconnected");
      await until(() => c.inbox.length >= 1, 90_000, "the reply after the relay restart");
      await c.device.sendText("flakyco", "and now?");
      await until(() => c.inbox.length >= 2, 30_000, "the next reply");
      expect(c.inbox.map((m) => m.text)).toEqual(["held: still there?", "held: and now?"]);
      expect(flaky.bot("flaky").counters.handled).toBe(2);
      await c.device.close();
    } finally {
      await flaky.stop();
      await biz.close();
      await relay.close();
    }
  });
});
