// Middleware order, filter queries, commands, hears, error boundaries and outgoing transformers,
// run against a recording API (the network part is covered by the host tests).
import pino from "pino";
import { describe, expect, it } from "vitest";
import {
  BotApi,
  BotHostError,
  Composer,
  Context,
  definePlugin,
  type ApiCaller,
  type BotMessage,
} from "../src/index.ts";
import { ChatQueue } from "../src/internal/chat-queue.ts";
import { runComposer } from "../src/internal/composer.ts";

function setup() {
  const sent: Array<{ method: string; payload: unknown }> = [];
  const base: ApiCaller = (method, payload) => {
    sent.push({ method, payload });
    return Promise.resolve({ id: `id-${String(sent.length)}`, count: 0 } as never);
  };
  const api = new BotApi(base);
  const shared = new Map<number, unknown>();
  const make = (message: Partial<BotMessage>, effects = new Map<number, unknown>()) =>
    new Context({
      update: {
        kind: "message",
        message: {
          id: "m1",
          chat: { id: "carol", type: "private" },
          from: { account: "carol", device: 1 },
          timestamp: 1,
          ...message,
        },
      },
      bot: { name: "b", account: "acme", device: 2 },
      log: pino({ level: "silent" }),
      api,
      effects: {
        get: (n) => effects.get(n),
        put: (n, r) => effects.set(n, r),
        messageId: (n) => `fixed-${String(n)}`,
      },
      sessions: { load: () => ({}) },
    });
  return { sent, api, make, effects: shared };
}

describe("composer", () => {
  it("runs middleware in registration order, around next()", async () => {
    const { make } = setup();
    const order: string[] = [];
    const bot = new Composer();
    bot.use(async (_ctx, next) => {
      order.push("a-in");
      await next();
      order.push("a-out");
    });
    bot.use(async (_ctx, next) => {
      order.push("b");
      await next();
    });
    bot.use(() => {
      order.push("c");
    });
    bot.use(() => {
      order.push("never");
    });
    await runComposer(bot, make({ text: "hi" }));
    expect(order).toEqual(["a-in", "b", "c", "a-out"]);
  });

  it("routes by filter query and narrows the context", async () => {
    const { make } = setup();
    const seen: string[] = [];
    const bot = new Composer();
    bot.on("message:file", (ctx, next) => {
      seen.push(`file:${ctx.message.file}`);
      return next();
    });
    bot.on("message:text", (ctx, next) => {
      seen.push(`text:${ctx.message.text.length}`);
      return next();
    });
    bot.on(["message:group", "message:private"], (ctx, next) => {
      seen.push(`chat:${ctx.chat.type}`);
      return next();
    });
    bot.on("message", () => {
      seen.push("any");
    });
    await runComposer(bot, make({ text: "hello" }));
    await runComposer(bot, make({ file: "/tmp/x.png", chat: { id: "group:g", type: "group" } }));
    expect(seen).toEqual(["text:5", "chat:private", "any", "file:/tmp/x.png", "chat:group", "any"]);
    expect(() => bot.on("message:nope" as "message")).toThrow(BotHostError);
  });

  it("routes receipts by kind", async () => {
    const { api } = setup();
    const seen: string[] = [];
    const bot = new Composer();
    bot.on("message", () => {
      seen.push("message");
    });
    bot.on("receipt:read", (ctx, next) => {
      seen.push(`read ${ctx.receipt.messageIds.join(",")}`);
      return next();
    });
    bot.on("receipt", (ctx) => {
      seen.push(`any ${ctx.receipt.kind} from ${ctx.from.account}`);
    });
    const receipt = (kind: "read" | "delivered") =>
      new Context({
        update: {
          kind: "receipt",
          receipt: {
            chat: { id: "carol", type: "private" },
            from: { account: "carol", device: 1 },
            kind,
            messageIds: ["x", "y"],
            timestamp: 1,
          },
        },
        bot: { name: "b", account: "acme", device: 2 },
        log: pino({ level: "silent" }),
        api,
        effects: { get: () => undefined, put: () => undefined, messageId: () => "id" },
        sessions: { load: () => ({}) },
      });
    await runComposer(bot, receipt("read"));
    await runComposer(bot, receipt("delivered"));
    expect(seen).toEqual(["read x,y", "any read from carol", "any delivered from carol"]);
    await expect(receipt("read").react("x")).rejects.toThrow(BotHostError);
  });

  it("routes group membership changes, narrows the context and replies in the group", async () => {
    const { api, sent } = setup();
    const seen: string[] = [];
    const bot = new Composer();
    bot.on("message", () => {
      seen.push("message");
    });
    bot.on("group:join", async (ctx, next) => {
      // Type-level: `group:join` narrows `ctx.group` to a change with at least one joiner, and
      // `ctx.chat` to a group chat; neither assignment compiles without the narrowing.
      const first: string = ctx.group.joined[0];
      const type: "group" = ctx.chat.type;
      seen.push(`join ${first} by ${ctx.from.account} in ${ctx.chat.id} (${type})`);
      await ctx.reply("hello group");
      return next();
    });
    bot.on("group:leave", (ctx, next) => {
      const first: string = ctx.group.left[0];
      seen.push(`leave ${first}`);
      return next();
    });
    bot.on("group", (ctx) => {
      const revision: number = ctx.group.revision;
      seen.push(`group r${String(revision)}`);
    });
    // @ts-expect-error a `receipt` filter does not promise a group change
    bot.on("receipt", (ctx) => ctx.group.revision);
    // @ts-expect-error a `group` filter does not promise a message
    bot.on("group", (ctx) => ctx.message.text);
    const change = (joined: string[], left: string[], revision: number) =>
      new Context({
        update: {
          kind: "group",
          group: {
            chat: { id: "group:g1234567", type: "group" },
            groupId: "g1234567",
            name: "team",
            revision,
            members: ["acme", "carol"],
            joined,
            left,
            by: "carol",
            timestamp: 1,
          },
        },
        bot: { name: "b", account: "acme", device: 2 },
        log: pino({ level: "silent" }),
        api,
        effects: { get: () => undefined, put: () => undefined, messageId: () => "id" },
        sessions: { load: () => ({}) },
      });
    await runComposer(bot, change(["acme", "carol"], [], 1));
    await runComposer(bot, change([], ["dave"], 2));
    await runComposer(bot, change([], [], 3));
    expect(seen).toEqual([
      "join acme by carol in group:g1234567 (group)",
      "group r1",
      "leave dave",
      "group r2",
      "group r3",
    ]);
    expect(sent).toEqual([
      {
        method: "sendText",
        payload: { to: "group:g1234567", text: "hello group", messageId: "id" },
      },
    ]);
    await expect(change(["x"], [], 4).react("x")).rejects.toThrow(BotHostError);
  });

  it("matches commands with arguments and hears regexes, first handler wins", async () => {
    const { make, sent } = setup();
    const bot = new Composer();
    bot.command({ name: "start", description: "starts" }, (ctx) => ctx.reply(`args=${ctx.match}`));
    bot.hears(/order (\d+)/, (ctx) => ctx.reply(`order ${ctx.match[1] ?? ""}`));
    bot.on("message:text", (ctx) => ctx.reply("fallback"));
    for (const text of ["/start now please", "where is order 42?", "/unknown", "/starting"])
      await runComposer(bot, make({ text }));
    expect(sent.map((s) => (s.payload as { text: string }).text)).toEqual([
      "args=now please",
      "order 42",
      "fallback",
      "fallback",
    ]);
    expect(bot.registry.commands).toEqual([
      { name: "start", description: "starts", plugin: "bot" },
    ]);
    expect(() => bot.command("Bad Name", () => undefined)).toThrow(BotHostError);
  });

  it("an error boundary isolates a failing handler and the chain goes on", async () => {
    const { make, sent } = setup();
    const errors: string[] = [];
    const bot = new Composer();
    bot.errorBoundary(
      (err) => errors.push(err instanceof Error ? err.message : "?"),
      () => {
        throw new Error("plugin crashed");
      },
    );
    bot.on("message:text", (ctx) => ctx.reply("still here"));
    await runComposer(bot, make({ text: "x" }));
    expect(errors).toEqual(["plugin crashed"]);
    expect(sent).toHaveLength(1);
    // Errors thrown downstream of the boundary are not its business.
    const outer = new Composer();
    outer.errorBoundary(
      () => errors.push("wrong"),
      (_ctx, next) => next(),
    );
    outer.use(() => {
      throw new Error("downstream");
    });
    await expect(runComposer(outer, make({ text: "x" }))).rejects.toThrow("downstream");
    expect(errors).toEqual(["plugin crashed"]);
  });

  it("outgoing transformers see, change and can refuse every call", async () => {
    const { make, sent, api } = setup();
    const audit: string[] = [];
    api.config.use(async (prev, method, payload) => {
      audit.push(method);
      return prev(method, payload);
    });
    api.config.use((prev, method, payload) => {
      if (method === "sendText" && "text" in payload && payload.text.includes("secret"))
        return Promise.reject(new Error("blocked"));
      return method === "sendText" && "text" in payload
        ? prev(method, { ...payload, text: payload.text.toUpperCase() })
        : prev(method, payload);
    });
    const bot = new Composer();
    bot.on("message:text", (ctx) => ctx.reply(ctx.message.text));
    await runComposer(bot, make({ text: "hello" }));
    await expect(runComposer(bot, make({ text: "a secret" }))).rejects.toThrow("blocked");
    expect(sent.map((s) => (s.payload as { text: string }).text)).toEqual(["HELLO"]);
    expect(audit).toEqual(["sendText"]);
  });

  it("replies are idempotent: a re-run with the same effect log sends nothing again", async () => {
    const { make, sent, effects } = setup();
    const bot = new Composer();
    bot.on("message:text", async (ctx) => {
      await ctx.reply("one");
      await ctx.reply("two");
    });
    await runComposer(bot, make({ text: "x" }, effects));
    expect(sent.map((s) => (s.payload as { messageId: string }).messageId)).toEqual([
      "fixed-0",
      "fixed-1",
    ]);
    effects.delete(1); // as if the process died after the first reply was recorded
    await runComposer(bot, make({ text: "x" }, effects));
    expect(sent.map((s) => (s.payload as { text: string }).text)).toEqual(["one", "two", "two"]);
  });

  it("definePlugin checks the shape", () => {
    expect(() => definePlugin({ name: "" })).toThrow(BotHostError);
    expect(() => definePlugin({ name: "ok" })).toThrow(/setup.*middleware/);
    expect(definePlugin({ name: "ok", middleware: () => undefined }).name).toBe("ok");
  });
});

describe("chat queue", () => {
  it("keeps each chat in order and runs chats concurrently up to the limit", async () => {
    const queue = new ChatQueue(3);
    const log: string[] = [];
    let running = 0;
    let peak = 0;
    const tasks: Promise<void>[] = [];
    for (let i = 0; i < 12; i++)
      for (const chat of ["a", "b", "c", "d", "e"])
        tasks.push(
          queue.push(chat, async () => {
            running++;
            peak = Math.max(peak, running);
            // Yield a few times so other chats interleave.
            for (let k = 0; k < (i % 3) + 1; k++) await new Promise((r) => setImmediate(r));
            log.push(`${chat}${String(i)}`);
            running--;
          }),
        );
    await Promise.all(tasks);
    await queue.idle();
    for (const chat of ["a", "b", "c", "d", "e"]) {
      const mine = log.filter((l) => l.startsWith(chat)).map((l) => Number(l.slice(1)));
      expect(mine).toEqual([...mine].sort((x, y) => x - y));
      expect(mine).toHaveLength(12);
    }
    expect(peak).toBe(3);
  });
});
