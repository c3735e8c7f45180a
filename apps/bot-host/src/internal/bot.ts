import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  ClientError,
  PairwiseDevice,
  linkAsCompanion,
  type GroupNotice,
  type StoredMessage,
} from "@pairwise/client";
import { messageIdAt, type KeyValueStore } from "@pairwise/core";
import type { Logger } from "pino";
import { BotApi, type ApiCaller } from "./api.ts";
import { BotStore } from "./bot-store.ts";
import { performCall } from "./device-calls.ts";
import { ChatQueue } from "./chat-queue.ts";
import { Composer, runComposer, type CommandInfo, type Middleware } from "./composer.ts";
import { Context } from "./context.ts";
import { BotHostError } from "./errors.ts";
import { PluginBot, type Plugin, type RouteHandler } from "./plugin.ts";
import type { BotGroupUpdate, BotMessage, Update } from "./update.ts";

/**
 * A bot's connection state: `unlinked` (showing a link code for the owner), `linking` (the
 * owner approved; registering), `connected`, `disconnected` (retrying), `logged-out` (removed by
 * the owner; a fresh link code follows).
 */
export type BotState = "unlinked" | "linking" | "connected" | "disconnected" | "logged-out";

/** Counters of one bot since the host started. */
export interface BotCounters {
  received: number;
  handled: number;
  sent: number;
  errors: number;
}

/** What the dashboard shows of a bot. */
export interface BotSnapshot {
  name: string;
  state: BotState;
  account?: string;
  deviceId?: number;
  deviceName: string;
  server: string;
  linkCode?: string;
  lastMessageAt?: number;
  counters: BotCounters;
  plugins: string[];
  commands: CommandInfo[];
  warnings: string[];
  queued: number;
}

/** One bot's settings, resolved from config. */
export interface BotSettings {
  name: string;
  server: string;
  stateDir: string;
  deviceName: string;
  /** Chats handled at once (messages of one chat are always handled in order). */
  concurrency: number;
  /** Send delivery receipts for incoming messages (default true). */
  deliveryReceipts?: boolean;
  /** How long one link code is offered before a fresh one (ms). */
  linkTimeoutMs?: number;
}

const PRIMARY_CHECK_MS = 6 * 3_600_000;
/** The relay logs a companion out after its primary has been offline this many days. */
const CUTOFF_DAYS = 14;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

function isUnauthorized(err: unknown): boolean {
  return ClientError.is(err, "ServerRefused") && err.serverCode === "Unauthorized";
}

/** Backoff of a handling a plugin deferred with `RetryLater`: the first wait, and the longest. */
const RETRY_LATER_FIRST_MS = 1000;
const RETRY_LATER_MAX_MS = 5 * 60 * 1000;

function isConnectivity(err: unknown): boolean {
  return (
    ClientError.is(err, "Disconnected") ||
    ClientError.is(err, "Timeout") ||
    BotHostError.is(err, "NotConnected")
  );
}

/** An error described without its message (which could quote user data). */
export function describeError(err: unknown): { type: string; code?: string } {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === "string" ? { type: err.name, code } : { type: err.name };
  }
  return { type: typeof err };
}

/** What a log line says about an update (never its text). */
function logFields(update: Update): Record<string, string | number> {
  switch (update.kind) {
    case "message":
      return { messageId: update.message.id };
    case "receipt":
      return { receipt: update.receipt.kind };
    case "group":
      return { groupRevision: update.group.revision };
  }
}

function toBotMessage(m: StoredMessage): BotMessage {
  return {
    id: m.id,
    chat: { id: m.chat, type: m.chat.startsWith("group:") ? "group" : "private" },
    from: { account: m.fromAccount, device: m.fromDevice },
    ...(m.text !== undefined ? { text: m.text } : {}),
    ...(m.file !== undefined ? { file: m.file } : {}),
    ...(m.replyTo !== undefined ? { replyTo: m.replyTo } : {}),
    timestamp: m.timestamp,
  };
}

function toBotGroupUpdate(n: GroupNotice): BotGroupUpdate {
  return {
    chat: { id: `group:${n.groupId}`, type: "group" },
    groupId: n.groupId,
    name: n.name,
    revision: n.revision,
    members: n.members,
    joined: n.added,
    left: n.removed,
    by: n.by,
    timestamp: n.timestamp,
  };
}

/**
 * One bot: a companion device (its home is `stateDir/device`), its own database
 * (`stateDir/bot.db`), its plugins' middleware, and the lifecycle that links, connects,
 * reconnects and relinks after a remote logout. Messages are handled in order per chat; each is
 * acknowledged to the server only after its handling completed and was recorded.
 */
export class Bot extends EventEmitter<{ change: [] }> {
  readonly settings: BotSettings;
  readonly log: Logger;
  readonly api: BotApi;
  /** Plugin HTTP routes: `METHOD /plugin/path`. */
  readonly routes = new Map<string, RouteHandler>();
  private readonly plugins: readonly Plugin[];
  private readonly root = new Composer<Context>();
  private readonly commands: CommandInfo[] = [];
  private readonly stopHooks: Array<() => unknown> = [];
  private readonly queue: ChatQueue;
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly now: () => number;
  private store: BotStore | undefined;
  private device: PairwiseDevice | undefined;
  private state: BotState = "disconnected";
  private linkCode: string | undefined;
  private lastMessageAt: number | undefined;
  private warnings: string[] = [];
  readonly counters: BotCounters = { received: 0, handled: 0, sent: 0, errors: 0 };
  private stopping = false;
  private lifecycle: Promise<void> | undefined;
  private waiters: Array<() => void> = [];
  private readonly stopSignal: Promise<undefined>;
  private signalStop: () => void = () => undefined;
  private checkTimer: NodeJS.Timeout | undefined;

  constructor(init: {
    settings: BotSettings;
    plugins: readonly Plugin[];
    logger: Logger;
    now?: () => number;
  }) {
    super();
    this.settings = init.settings;
    this.plugins = init.plugins;
    this.log = init.logger.child({ bot: init.settings.name });
    this.queue = new ChatQueue(init.settings.concurrency);
    this.now = init.now ?? Date.now;
    this.api = new BotApi(this.network);
    this.stopSignal = new Promise<undefined>((r) => (this.signalStop = () => r(undefined)));
  }

  /** The bot's state now. */
  get currentState(): BotState {
    return this.state;
  }

  /**
   * The linked device's identity and store (for backups and restores), or undefined while the
   * bot is not linked. The store changes when the bot is relinked after a remote logout.
   */
  linkedDevice(): { accountId: string; deviceId: number; store: KeyValueStore } | undefined {
    const device = this.device;
    const id = device?.identity;
    return device && id ? { ...id, store: device.store } : undefined;
  }

  /** What the dashboard shows. */
  snapshot(): BotSnapshot {
    const id = this.device?.identity;
    return {
      name: this.settings.name,
      state: this.state,
      ...(id ? { account: id.accountId, deviceId: id.deviceId } : {}),
      deviceName: this.settings.deviceName,
      server: this.settings.server,
      ...(this.linkCode && this.state === "unlinked" ? { linkCode: this.linkCode } : {}),
      ...(this.lastMessageAt !== undefined ? { lastMessageAt: this.lastMessageAt } : {}),
      counters: { ...this.counters },
      plugins: this.plugins.map((p) => p.name),
      commands: [...this.commands],
      warnings: [...this.warnings],
      queued: this.queue.size,
    };
  }

  private setState(state: BotState): void {
    if (state !== this.state) this.log.info({ state }, "state");
    this.state = state;
    this.wakeAll();
    this.emit("change");
  }

  private wakeAll(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves at the next state change (or stop). */
  private changed(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }

  /** Runs the plugins' setup and starts the lifecycle. Throws `BotHostError` on a bad plugin or store. */
  async start(): Promise<void> {
    this.store = BotStore.open(this.settings.stateDir);
    this.store.prune(this.now());
    for (const plugin of this.plugins) {
      const dataDir = join(this.settings.stateDir, "plugins", plugin.name);
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const pb = new PluginBot({
        name: this.settings.name,
        plugin: plugin.name,
        log: this.log.child({ plugin: plugin.name }),
        api: this.api,
        dataDir,
        registry: { plugin: plugin.name, commands: this.commands },
        allCommands: () => this.commands,
      });
      try {
        await plugin.setup?.(pb);
        if (plugin.middleware) pb.use(plugin.middleware);
      } catch (cause) {
        if (BotHostError.is(cause)) throw cause;
        throw new BotHostError("PluginLoadFailed", `plugin ${plugin.name} failed in setup`, {
          cause,
        });
      }
      for (const [route, handler] of pb.routes)
        this.routes.set(
          `${route.split(" ")[0] ?? ""} /${plugin.name}${route.split(" ")[1] ?? ""}`,
          handler,
        );
      this.stopHooks.push(...pb.stopHooks);
      this.root.errorBoundary(
        (err, ctx) => {
          // A passing failure (no connection, or a plugin's RetryLater) is not the plugin's
          // fault: the handling runs again, unacknowledged meanwhile, instead of completing
          // without what the plugin could not do.
          const retryLater = BotHostError.is(err, "RetryLater");
          if (retryLater || isConnectivity(err)) {
            ctx.interrupted = true;
            if (retryLater) ctx.deferred = true;
            ctx.log.warn({ err: describeError(err) }, "plugin could not finish; will rerun");
            return;
          }
          this.counters.errors++;
          ctx.log.error({ err: describeError(err) }, "plugin middleware failed");
        },
        this.scoped(plugin.name, pb.log, pb.middleware()),
      );
    }
    this.device = this.openDevice();
    this.lifecycle = this.run();
  }

  /** Middleware that runs `mw` with `ctx.scope`/`ctx.log` set to the plugin's (restored for `next`). */
  private scoped(name: string, log: Logger, mw: Middleware): Middleware {
    return async (ctx, next) => {
      const outer = { scope: ctx.scope, log: ctx.log };
      const enter = () => {
        ctx.scope = name;
        ctx.log = log.child(logFields(ctx.update));
      };
      enter();
      try {
        await mw(ctx, async () => {
          ctx.scope = outer.scope;
          ctx.log = outer.log;
          try {
            await next();
          } finally {
            enter();
          }
        });
      } finally {
        ctx.scope = outer.scope;
        ctx.log = outer.log;
      }
    };
  }

  private openDevice(): PairwiseDevice {
    const device = PairwiseDevice.open({
      home: join(this.settings.stateDir, "device"),
      timeoutMs: 20_000,
      now: this.now,
      // Many bots share the process: each keeps small database caches.
      lowMemory: true,
    });
    device.deliveryReceipts = this.settings.deliveryReceipts ?? true;
    device.on("connection", ({ state }) => {
      if (!device.identity || this.device !== device) return;
      if (state === "logged-out") this.loggedOut = true;
      if (state === "connected" && this.receiving) this.setState("connected");
      else if (state === "disconnected" && this.state === "connected")
        this.setState("disconnected");
      else if (state === "logged-out") this.setState("logged-out");
    });
    device.on("receipt", (r) => {
      if (this.device === device) this.onReceipt(r);
    });
    device.on("warning", ({ days }) => {
      const left = Math.max(0, CUTOFF_DAYS - days);
      this.warnings = [
        `the account's primary has been offline for ${days} days: open it within ${left} day${left === 1 ? "" : "s"} or this bot is logged out`,
      ];
      this.log.warn({ days }, "primary offline");
      this.emit("change");
    });
    return device;
  }

  private loggedOut = false;
  private receiving = false;

  // Methods, not the fields, so the checks are re-read after each await.
  private isStopping(): boolean {
    return this.stopping;
  }

  private isLoggedOut(): boolean {
    return this.loggedOut;
  }

  private async run(): Promise<void> {
    for (let attempt = 0; !this.isStopping();) {
      const device = this.device;
      if (!device) return;
      try {
        if (!device.identity) await this.link(device);
        if (this.isStopping()) return;
        await this.connect(device);
        attempt = 0;
        while (!this.isStopping() && !this.isLoggedOut()) await this.changed();
        if (this.isStopping()) return;
        await this.relink();
      } catch (err) {
        if (this.isStopping()) return;
        if (isUnauthorized(err) || this.isLoggedOut()) {
          this.setState("logged-out");
          await this.relink();
          continue;
        }
        if (ClientError.is(err, "Timeout") && !device.identity) continue; // a fresh link code
        this.log.warn({ err: describeError(err) }, "cannot reach the server; retrying");
        this.setState("disconnected");
        await sleep(Math.random() * Math.min(30_000, 500 * 2 ** attempt++));
      }
    }
  }

  private async link(device: PairwiseDevice): Promise<void> {
    const server = { url: this.settings.server };
    await device.connect(server, (push: { kind: { case: string | undefined } }) => {
      if (push.kind.case === "provisioning" && this.state === "unlinked") this.setState("linking");
    });
    const linking = linkAsCompanion(device, {
      server,
      deviceName: this.settings.deviceName,
      timeoutMs: this.settings.linkTimeoutMs ?? 300_000,
      onLinkCode: (uri) => {
        this.linkCode = uri;
        this.setState("unlinked");
      },
    });
    // Stopping does not wait for the owner: the pending link is abandoned (its code dies with
    // the connection).
    linking.catch(() => undefined);
    const linked = await Promise.race([linking, this.stopSignal]);
    if (!linked) return;
    this.linkCode = undefined;
    this.warnings = [];
    this.log.info({ account: linked.accountId, device: linked.deviceId }, "linked");
    this.setState("linking");
  }

  private async connect(device: PairwiseDevice): Promise<void> {
    device.setInboundHandler((m) => this.inbound(m));
    device.setGroupNoticeHandler((n) => this.groupInbound(n));
    await device.connect({ url: this.settings.server });
    // Group notices and messages stored but not handled when the last run stopped: first, in
    // arrival order, so per-chat order holds with what the server delivers next. Notices go
    // before messages (the two inboxes are separate; a member is added before it is written to).
    for (const n of device.unhandledGroupNotices())
      void this.groupInbound(n).then(
        () => device.markGroupNoticeHandled(n.groupId, n.revision),
        () => undefined,
      );
    for (const m of device.unhandledMessages())
      void this.inbound(m).then(
        () => device.markHandled(m.id),
        () => undefined,
      );
    this.receiving = true;
    await device.startReceiving();
    this.setState("connected");
    clearInterval(this.checkTimer);
    this.checkTimer = setInterval(() => {
      void device.checkPrimaryOnline().catch(() => undefined);
    }, PRIMARY_CHECK_MS);
    this.checkTimer.unref();
  }

  /** Logged out by the owner: the old device goes, a fresh one shows a new link code. */
  private async relink(): Promise<void> {
    this.log.warn("logged out by the owner; showing a fresh link code");
    this.receiving = false;
    clearInterval(this.checkTimer);
    await this.queue.idle();
    const old = this.device;
    old?.setInboundHandler(undefined);
    old?.setGroupNoticeHandler(undefined);
    await old?.close().catch(() => undefined);
    rmSync(join(this.settings.stateDir, "device"), { recursive: true, force: true });
    this.loggedOut = false;
    this.warnings = [];
    if (this.isStopping()) return;
    this.device = this.openDevice();
  }

  /** Queues a stored message for handling unless it was handled already. */
  private inbound(m: StoredMessage): Promise<void> {
    const store = this.store;
    if (m.outgoing || !store) return Promise.resolve();
    return this.enqueue(BotStore.key(m.fromAccount, m.id), m.chat, store, () => {
      this.counters.received++;
      return { kind: "message", message: toBotMessage(m) };
    });
  }

  /**
   * A group membership change: handled in the group chat's order like messages, at most once
   * per group and revision (the key is recorded in the bot's database when handling completes;
   * the device acknowledges the notice only after that).
   */
  private groupInbound(n: GroupNotice): Promise<void> {
    const store = this.store;
    if (!store) return Promise.resolve();
    const group = toBotGroupUpdate(n);
    return this.enqueue(
      `group\u0000${n.groupId}\u0000${String(n.revision)}`,
      group.chat.id,
      store,
      () => ({
        kind: "group",
        group,
      }),
    );
  }

  /**
   * Queues the update `make` builds for handling in `chat`'s order, unless `key` was handled
   * already or is being handled (then that handling's promise). Settles when it was handled.
   */
  private enqueue(key: string, chat: string, store: BotStore, make: () => Update): Promise<void> {
    if (store.wasHandled(key)) return Promise.resolve();
    const running = this.inFlight.get(key);
    if (running) return running;
    const update = make();
    const p = this.queue.push(chat, () => this.handle(update, key, chat, store));
    const tracked = p.finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, tracked);
    this.emit("change");
    return tracked;
  }

  /**
   * A receipt for messages the account sent: handled in the chat's order like messages (at most
   * once: the device acknowledges receipts itself).
   */
  private onReceipt(r: {
    from: { accountId: string; deviceId: number };
    kind: "delivered" | "read";
    messageIds: string[];
    timestamp: number;
  }): void {
    const store = this.store;
    if (!store || !this.receiving) return;
    const chat = r.from.accountId;
    const update: Update = {
      kind: "receipt",
      receipt: {
        chat: { id: chat, type: "private" },
        from: { account: chat, device: r.from.deviceId },
        kind: r.kind,
        messageIds: r.messageIds,
        timestamp: r.timestamp,
      },
    };
    const key = `receipt\u0000${createHash("sha256")
      .update(JSON.stringify([chat, r.from.deviceId, r.kind, r.messageIds, r.timestamp]))
      .digest("base64url")}`;
    if (store.wasHandled(key)) return;
    void this.queue.push(chat, () => this.handle(update, key, chat, store)).catch(() => undefined);
  }

  private async handle(update: Update, key: string, chat: string, store: BotStore): Promise<void> {
    if (store.wasHandled(key)) return;
    const logId = logFields(update);
    const me = this.device?.identity;
    for (let deferrals = 0; ;) {
      const sessions = new Map<string, Record<string, unknown>>();
      const ctx = new Context({
        update,
        bot: { name: this.settings.name, account: me?.accountId ?? "", device: me?.deviceId ?? 0 },
        log: this.log.child(logId),
        api: this.api,
        isRetryable: isConnectivity,
        effects: {
          get: (n) => store.effect(key, n),
          put: (n, result) => store.putEffect(key, n, result),
          // The same id each time this handling runs (the relay then drops a repeat), in the
          // update's time, so that a bot's replies sort by time as clients' ids do.
          messageId: (n) =>
            messageIdAt(
              updateTime(update),
              createHash("sha256")
                .update(
                  `${me?.accountId ?? ""}\u0000${String(me?.deviceId ?? 0)}\u0000${key}\u0000${String(n)}`,
                )
                .digest(),
            ),
        },
        sessions: {
          load: (scope) => {
            let s = sessions.get(scope);
            if (!s) sessions.set(scope, (s = store.session(chat, scope)));
            return s;
          },
        },
      });
      try {
        await runComposer(this.root, ctx);
      } catch (err) {
        // Interrupted by a lost connection (or one not made yet, as when a restarted host
        // resumes its inbox before the relay has it receiving): the handling runs again below,
        // so it has not failed.
        if (ctx.interrupted) {
          this.log.warn({ err: describeError(err), ...logId }, "handling interrupted; will rerun");
        } else {
          this.counters.errors++;
          this.log.error({ err: describeError(err), ...logId }, "handling failed");
        }
      }
      // A reply that failed for lack of a connection makes the whole handling run again once
      // connected (recorded effects are not repeated) instead of completing without it.
      if (ctx.interrupted) {
        // A plugin's RetryLater: wait 1 s, doubling to 5 min, with jitter (or until stopped).
        if (ctx.deferred) {
          const ceiling = Math.min(RETRY_LATER_MAX_MS, RETRY_LATER_FIRST_MS * 2 ** deferrals++);
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([
            new Promise(
              (r) => (timer = setTimeout(r, ceiling / 2 + (Math.random() * ceiling) / 2)),
            ),
            this.stopSignal,
          ]);
          clearTimeout(timer);
        }
        while (this.state !== "connected" && !this.isStopping() && !this.isLoggedOut())
          await this.changed();
        // Stopping or logged out: left unacknowledged (and in the inbox) for a later run.
        if (this.isStopping() || this.isLoggedOut())
          throw new BotHostError("NotConnected", "stopped before the message could be handled");
        continue;
      }
      store.complete(
        key,
        this.now(),
        [...sessions].map(([scope, data]) => ({ chat, scope, data })),
      );
      if (update.kind === "message") {
        this.counters.handled++;
        this.lastMessageAt = this.now();
      }
      this.emit("change");
      return;
    }
  }

  /** The end of the API chain: the device. */
  private readonly network: ApiCaller = async (method, payload) => {
    const device = this.device;
    if (!device?.identity || this.state !== "connected")
      throw new BotHostError("NotConnected", `bot ${this.settings.name} is not connected`);
    const result = await performCall(device, method, payload, {
      outgoingDir: join(this.settings.stateDir, "outgoing"),
    });
    if (method !== "markRead") this.counters.sent++;
    return result as never;
  };

  /**
   * Stops: no new handling starts, in-flight handling drains (acknowledged as it completes),
   * stop hooks run, then the device and database close.
   */
  async stop(): Promise<void> {
    if (this.isStopping()) return;
    this.stopping = true;
    this.signalStop();
    this.wakeAll();
    clearInterval(this.checkTimer);
    await this.queue.idle();
    // Let acknowledgements scheduled by completed handlers reach the device's batch.
    await new Promise((r) => setImmediate(r));
    for (const hook of this.stopHooks) await Promise.resolve(hook()).catch(() => undefined);
    const device = this.device;
    await device?.close().catch(() => undefined);
    await this.lifecycle?.catch(() => undefined);
    this.store?.close();
  }
}

/** When an update happened, as its sender or the relay stated it (ms). */
function updateTime(update: Update): number {
  switch (update.kind) {
    case "message":
      return update.message.timestamp;
    case "receipt":
      return update.receipt.timestamp;
    case "group":
      return update.group.timestamp;
  }
}
