import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { autoRetry } from "@grammyjs/auto-retry";
import type { PairwiseDevice, StoredMessage } from "@pairwise/client";
import { Bot, GrammyError, HttpError, InputFile, type Context } from "grammy";
import type { Message, Update } from "grammy/types";
import {
  Listeners,
  defineCapabilities,
  type AdapterCapabilities,
  type ConnectionState,
  type DeliveryCheckpoint,
  type InteropAdapter,
  type StateChange,
} from "../adapter.ts";
import { InteropError } from "../errors.ts";
import { fileMessageIds, memoryMessageIds, type MessageIdMap } from "./message-ids.ts";

/** One bridged pair: a Pairwise chat (an account id) and a Telegram chat id. */
export interface TelegramChatMapping {
  /** The Pairwise account whose chat with the bridge's account is bridged. */
  pairwise: string;
  /** The Telegram chat (a group, or a private chat with the bot). */
  telegram: number;
}

/**
 * How the bridge writes on the Pairwise side: a companion device (see
 * {@link createTelegramBridge}) or a bot host's API (the `telegram-bridge` plugin).
 */
export interface PairwiseSide {
  /** Sends a text; resolves to its Pairwise message id. */
  sendText(chat: string, text: string, options: { replyTo?: string }): Promise<string>;
  /** Sends a file; resolves to its Pairwise message id. */
  sendFile(chat: string, path: string, options: { caption?: string }): Promise<string>;
}

/** A Pairwise message the bridge forwards to Telegram. */
export interface BridgedMessage {
  id: string;
  /** The Pairwise chat (the other account). */
  chat: string;
  fromAccount: string;
  text?: string;
  /** A received file's saved path. */
  file?: string;
  replyTo?: string;
}

/** Options of a {@link TelegramBridge} whatever its Pairwise side. */
export interface TelegramBridgeCoreOptions {
  /** The Telegram bot token. */
  token: string;
  chats: readonly TelegramChatMapping[];
  /** Bot API root (default https://api.telegram.org): a local Bot API server, a test fake. */
  apiRoot?: string;
  /** Long-poll timeout of getUpdates in seconds (default 30). */
  pollTimeoutSeconds?: number;
  /** Rate limits (429) are retried after `retry_after` up to this many times (default 5). */
  maxRetryAttempts?: number;
  /** A `retry_after` above this fails the call instead of waiting (default 60 s). */
  maxRetryDelaySeconds?: number;
  /** Where files from Telegram are stored before they are sent on (default: a temp dir). */
  filesDir?: string;
  /**
   * A SQLite file (created if missing) where the bridge keeps the message ids it matched across
   * (the most recent 200,000 pairs), so replies keep their reference across restarts. Without
   * it they are kept in memory (the most recent 10,000 pairs).
   */
  messageIdsFile?: string;
  now?: () => number;
}

/** Options of {@link createTelegramBridge}. */
export interface TelegramBridgeOptions extends TelegramBridgeCoreOptions {
  /** The bridge's Pairwise device: a companion linked to the account that owns the chats. */
  device: PairwiseDevice;
}

/** Tries to pass one Telegram message on to the Pairwise side before giving it up. */
const FROM_TELEGRAM_ATTEMPTS = 10;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 60_000;

/** The wait before try `attempt + 1` (0.5 s doubling, at most a minute). */
function delayAfter(attempt: number): number {
  return Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (attempt - 1));
}

/** The notice the Pairwise side gets when the bridge joins a chat. */
export const BRIDGE_NOTICE =
  "⚠ This chat is now bridged to Telegram. Messages here are not end-to-end encrypted beyond this bridge: the bridge and Telegram can read them.";

/** What the Telegram bridge carries (not end-to-end encrypted). */
export const TELEGRAM_CAPABILITIES: AdapterCapabilities = defineCapabilities(false, [
  "text",
  "photos",
  "videos",
  "voiceNotes",
  "files",
  "replies",
]);

const PHOTO = new Set([".jpg", ".jpeg", ".png", ".webp"]);
const VOICE = new Set([".ogg", ".oga", ".opus"]);
const VIDEO = new Set([".mp4", ".mov", ".webm"]);

/** Which Telegram method carries a Pairwise file, by its name. */
export function telegramKind(fileName: string): "photo" | "voice" | "video" | "document" {
  const ext = extname(fileName).toLowerCase();
  if (PHOTO.has(ext)) return "photo";
  if (VOICE.has(ext)) return "voice";
  if (VIDEO.has(ext)) return "video";
  return "document";
}

/**
 * Whether a `forward` failure is a passing one: Telegram could not be reached (a network error),
 * as opposed to the Bot API refusing the message. A passing failure should leave the message to
 * be forwarded again; a refusal will not change by trying again.
 */
export function isPassingTelegramFailure(err: unknown): boolean {
  return InteropError.is(err, "BridgeFailed") && err.cause instanceof HttpError;
}

/**
 * A Telegram bridge built on grammY: runs as a companion device of a Pairwise account and maps
 * Pairwise chats to Telegram chats through a bot. Text, photos, voice notes, videos, files and
 * replies cross both ways; on start the Pairwise side of each chat is told the chat is not
 * end-to-end encrypted beyond the bridge. Bot API rate limits (429) are retried after
 * `retry_after` by `@grammyjs/auto-retry`.
 */
export class TelegramBridge implements InteropAdapter {
  readonly remote = "telegram";
  readonly capabilities = TELEGRAM_CAPABILITIES;
  private readonly bot: Bot;
  private current: ConnectionState = "stopped";
  /** Aborted by `stop`: ends the backoffs waiting in `untilPassedOn`. */
  private stopping = new AbortController();
  private readonly states = new Listeners<StateChange>();
  private readonly checkpoints = new Listeners<DeliveryCheckpoint>();
  private readonly byPairwise = new Map<string, number>();
  private readonly byTelegram = new Map<number, string>();
  /**
   * Message ids across the bridge, both ways (for replies): `p:<id>` ↔ `t:<chat>:<id>`. A file
   * is open from `start` to `stop`; without one the map is in memory from the start.
   */
  private ids: MessageIdMap | undefined;
  private readonly announced = new Set<string>();
  private polling: Promise<void> | undefined;
  /**
   * The next update to ask Telegram for: every update below it was handled (passed on, or given
   * up), and asking with it confirms them, so Telegram does not send them again.
   */
  private offset = 0;
  private readonly filesDir: string;

  constructor(
    private readonly side: PairwiseSide,
    private readonly options: TelegramBridgeCoreOptions,
  ) {
    if (!/^\d+:[A-Za-z0-9_-]+$/.test(options.token))
      throw new InteropError("InvalidArgument", "the Telegram bot token is not valid");
    for (const c of options.chats) {
      if (!Number.isSafeInteger(c.telegram))
        throw new InteropError("InvalidArgument", "a Telegram chat id is not valid");
      this.byPairwise.set(c.pairwise, c.telegram);
      this.byTelegram.set(c.telegram, c.pairwise);
    }
    this.filesDir = options.filesDir ?? mkdtempSync(join(tmpdir(), "pairwise-telegram-"));
    if (options.messageIdsFile === undefined) this.ids = memoryMessageIds();
    this.bot = new Bot(options.token, {
      client: { ...(options.apiRoot ? { apiRoot: options.apiRoot } : {}) },
    });
    this.bot.api.config.use(
      autoRetry({
        maxRetryAttempts: options.maxRetryAttempts ?? 5,
        maxDelaySeconds: options.maxRetryDelaySeconds ?? 60,
      }),
    );
    // Polling (see `poll`) moves past an update once its handler settles, and Telegram does not
    // send it again: a message the Pairwise side could not take yet is tried again (with a
    // backoff that also holds back the updates behind it) before it is given up.
    this.bot.on("message", (ctx) => this.untilPassedOn(() => this.fromTelegram(ctx)));
  }

  get state(): ConnectionState {
    return this.current;
  }

  /** Runs `work` until it succeeds, up to FROM_TELEGRAM_ATTEMPTS times, 0.5 s doubling apart. */
  private async untilPassedOn(work: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await work();
        if (this.current === "backing-off") this.setState("connected");
        return;
      } catch (err) {
        if (attempt >= FROM_TELEGRAM_ATTEMPTS || this.stopping.signal.aborted) throw err;
        this.setState("backing-off", "the Pairwise side did not take a message");
        // Stopping cuts the wait short, and the attempt after it is the last.
        await sleep(delayAfter(attempt), undefined, { signal: this.stopping.signal }).catch(
          () => undefined,
        );
      }
    }
  }

  private setState(state: ConnectionState, reason?: string): void {
    if (this.current === state) return;
    this.current = state;
    this.states.emit({ remote: "telegram", state, ...(reason ? { reason } : {}) });
  }

  private checkpoint(messageId: string, step: DeliveryCheckpoint["step"], reason?: string): void {
    this.checkpoints.emit({
      messageId,
      remote: "telegram",
      step,
      ...(reason ? { reason } : {}),
      at: (this.options.now ?? Date.now)(),
    });
  }

  onState(listener: (change: StateChange) => void): () => void {
    return this.states.add(listener);
  }

  onCheckpoint(listener: (checkpoint: DeliveryCheckpoint) => void): () => void {
    return this.checkpoints.add(listener);
  }

  /** True when a Pairwise chat is bridged. */
  bridges(chat: string): boolean {
    return this.byPairwise.has(chat);
  }

  /**
   * Tells a Pairwise chat, once, that it is bridged and not end-to-end encrypted beyond the
   * bridge (before anything else crosses in either direction).
   */
  async announce(chat: string): Promise<void> {
    if (this.announced.has(chat) || !this.byPairwise.has(chat)) return;
    await this.side.sendText(chat, BRIDGE_NOTICE, {});
    this.announced.add(chat);
  }

  /**
   * Opens the message id file if one is set, checks the token (getMe) and starts long polling.
   * Throws `InteropError("InvalidArgument")` when the file cannot be opened and
   * `InteropError("BridgeFailed")` when the Bot API refuses the token.
   */
  async start(): Promise<void> {
    if (this.options.messageIdsFile !== undefined)
      this.ids ??= fileMessageIds(this.options.messageIdsFile);
    this.stopping = new AbortController();
    this.setState("connecting");
    mkdirSync(this.filesDir, { recursive: true });
    try {
      await this.bot.init();
    } catch (cause) {
      this.closeMessageIds();
      this.setState("refused", "getMe failed");
      throw new InteropError("BridgeFailed", "the Telegram Bot API refused the bot token", {
        cause,
      });
    }
    this.polling = this.poll(this.stopping.signal);
  }

  /** Closes the message id file (a memory map stays, with the bridge). */
  private closeMessageIds(): void {
    if (this.options.messageIdsFile === undefined) return;
    this.ids?.close();
    this.ids = undefined;
  }

  /**
   * Long polling, in place of grammY's `bot.start`, so that only handled updates are confirmed:
   * grammY's `stop` confirms the update being handled, and a message still waiting to be passed
   * on would then never come back. Updates are handled one at a time, in order.
   */
  private async poll(signal: AbortSignal): Promise<void> {
    const timeout = this.options.pollTimeoutSeconds ?? 30;
    // grammY types its signals with the `abort-controller` shim's AbortSignal (the same thing).
    const cancel = signal as unknown as Parameters<Bot["api"]["getUpdates"]>[1];
    // A function: `stop` aborts while this awaits, which narrowing on `signal.aborted` ignores.
    const stopped = () => signal.aborted;
    let failures = 0;
    let ready = false;
    while (!stopped()) {
      let updates: Update[];
      try {
        if (!ready) {
          // Updates cannot be fetched while a webhook is set (grammY's start does the same).
          await this.bot.api.deleteWebhook({}, cancel);
          ready = true;
          this.setState("connected");
        }
        updates = await this.bot.api.getUpdates(
          { offset: this.offset, timeout, allowed_updates: ["message"] },
          cancel,
        );
      } catch (err) {
        if (stopped()) break;
        // A revoked token, or another poller on the same bot: trying again will not help.
        if (err instanceof GrammyError && (err.error_code === 401 || err.error_code === 409)) {
          this.setState("refused", err.error_code === 401 ? "token refused" : "another poller");
          return;
        }
        this.setState("backing-off", "polling failed");
        await sleep(delayAfter(++failures), undefined, { signal }).catch(() => undefined);
        continue;
      }
      if (failures > 0) {
        failures = 0;
        this.setState("connected");
      }
      for (const update of updates) {
        try {
          await this.bot.handleUpdate(update);
        } catch {
          // Stopped while its message waited to be passed on: it stays unconfirmed, and Telegram
          // sends it again once the bridge starts again.
          if (stopped()) return;
          this.setState("backing-off", "update failed");
        }
        this.offset = update.update_id + 1;
        if (stopped()) return;
      }
    }
  }

  /**
   * Stops polling and confirms the updates handled so far. A message still waiting to be tried
   * again is not confirmed: it comes back from Telegram when the bridge starts again.
   */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.polling?.catch(() => undefined);
    this.polling = undefined;
    // Not when refused: after a 409 another poller has the bot, and a getUpdates of ours would end
    // its long poll (Telegram ends the older one), pushing it out in turn.
    if (this.offset > 0 && this.current !== "stopped" && this.current !== "refused") {
      // Best effort: unconfirmed updates are sent again after a restart (at least once).
      await this.bot.api
        .getUpdates({ offset: this.offset, limit: 1, timeout: 0 })
        .catch(() => undefined);
    }
    this.closeMessageIds();
    this.setState("stopped");
  }

  /**
   * Forwards one Pairwise message to its Telegram chat (nothing for an unmapped chat). Resolves
   * once Telegram accepted it; a refusal is a `failed` checkpoint and `InteropError("BridgeFailed")`.
   */
  async forward(m: BridgedMessage): Promise<void> {
    const chatId = this.byPairwise.get(m.chat);
    if (chatId === undefined) return;
    await this.announce(m.chat);
    await this.fromPairwise(m, chatId);
  }

  private async fromPairwise(m: BridgedMessage, chatId: number): Promise<void> {
    const who = m.fromAccount;
    const replyTo = m.replyTo ? this.ids?.get(`p:${m.replyTo}`) : undefined;
    const reply = replyTo
      ? {
          reply_parameters: {
            message_id: Number(replyTo.split(":")[2]),
            allow_sending_without_reply: true,
          },
        }
      : {};
    let sent: Message;
    try {
      if (m.file === undefined) {
        sent = await this.bot.api.sendMessage(chatId, `${who}: ${m.text ?? ""}`, reply);
      } else {
        const caption = `${who}${m.text ? `: ${m.text}` : ""}`;
        const file = new InputFile(m.file);
        const kind = telegramKind(m.file);
        sent =
          kind === "photo"
            ? await this.bot.api.sendPhoto(chatId, file, { caption, ...reply })
            : kind === "voice"
              ? await this.bot.api.sendVoice(chatId, file, { caption, ...reply })
              : kind === "video"
                ? await this.bot.api.sendVideo(chatId, file, { caption, ...reply })
                : await this.bot.api.sendDocument(chatId, file, { caption, ...reply });
      }
    } catch (cause) {
      this.checkpoint(m.id, "failed", "bot api");
      throw new InteropError("BridgeFailed", "the Telegram Bot API refused a message", { cause });
    }
    this.link(m.id, chatId, sent.message_id);
    this.checkpoint(m.id, "delivered");
  }

  private link(pairwiseId: string, chatId: number, telegramId: number): void {
    this.ids?.link(`p:${pairwiseId}`, `t:${chatId}:${telegramId}`);
  }

  private async download(fileId: string, name: string): Promise<string> {
    const file = await this.bot.api.getFile(fileId);
    if (!file.file_path) throw new InteropError("BridgeFailed", "Telegram gave no file path");
    const root = this.options.apiRoot ?? "https://api.telegram.org";
    const res = await fetch(`${root}/file/bot${this.options.token}/${file.file_path}`);
    if (!res.ok) throw new InteropError("BridgeFailed", "cannot download a file from Telegram");
    const dir = join(this.filesDir, `${Date.now()}-${fileId.replace(/[^A-Za-z0-9_-]/g, "")}`);
    mkdirSync(dir, { recursive: true });
    const path = join(dir, name);
    writeFileSync(path, new Uint8Array(await res.arrayBuffer()));
    return path;
  }

  private async fromTelegram(ctx: Context): Promise<void> {
    const msg = ctx.message;
    if (!msg) return;
    const chat = this.byTelegram.get(msg.chat.id);
    if (chat === undefined || msg.from.id === this.bot.botInfo.id) return;
    const who = [msg.from.first_name, msg.from.last_name].filter(Boolean).join(" ");
    const label = `${who} (Telegram)`;
    const replied = msg.reply_to_message
      ? this.ids?.get(`t:${msg.chat.id}:${msg.reply_to_message.message_id}`)
      : undefined;
    const replyTo = replied?.startsWith("p:") ? replied.slice(2) : undefined;
    const d = this.side;
    await this.announce(chat);
    const caption = `${label}${msg.caption ? `: ${msg.caption}` : ""}`;
    let id: string;
    if (msg.text !== undefined) {
      id = await d.sendText(chat, `${label}: ${msg.text}`, replyTo ? { replyTo } : {});
    } else if (msg.photo?.length) {
      const largest = msg.photo.reduce((a, b) => (b.width * b.height > a.width * a.height ? b : a));
      id = await d.sendFile(chat, await this.download(largest.file_id, "photo.jpg"), { caption });
    } else if (msg.voice) {
      id = await d.sendFile(chat, await this.download(msg.voice.file_id, "voice.ogg"), { caption });
    } else if (msg.video) {
      id = await d.sendFile(chat, await this.download(msg.video.file_id, "video.mp4"), { caption });
    } else if (msg.document) {
      const name = (msg.document.file_name ?? "file").replace(/[/\\]/g, "_");
      id = await d.sendFile(chat, await this.download(msg.document.file_id, name), { caption });
    } else {
      // Stickers, polls, locations…: not carried; the Pairwise side is told, never left unaware.
      id = await d.sendText(chat, `${label} sent something this bridge cannot carry`, {});
      this.checkpoint(id, "degraded", "unsupported telegram content");
    }
    this.link(id, msg.chat.id, msg.message_id);
  }
}

/** A {@link TelegramBridge} running on a companion device of its own. */
export interface DeviceTelegramBridge extends InteropAdapter {
  readonly bridge: TelegramBridge;
  /** Waits until every Pairwise message received so far was forwarded. */
  idle(): Promise<void>;
}

/**
 * Creates a Telegram bridge on a companion device: on `start()` it checks the token, tells every
 * mapped Pairwise chat that it is not end-to-end encrypted beyond the bridge, starts receiving on
 * the device and polling Telegram. Throws `InteropError("InvalidArgument")` for a malformed token
 * or chat id.
 */
export function createTelegramBridge(options: TelegramBridgeOptions): DeviceTelegramBridge {
  const { device, ...core } = options;
  const bridge = new TelegramBridge(
    {
      sendText: (chat, text, o) => device.sendText(chat, text, o),
      sendFile: (chat, path, o) => device.sendFile(chat, path, o),
    },
    { filesDir: join(device.home, "telegram"), ...core },
  );
  let work: Promise<void> = Promise.resolve();
  // Forwarded in order; acknowledged to the relay only once Telegram accepted the message (or
  // refused it for good). A network failure leaves it unacknowledged: it comes back.
  const handle = (m: StoredMessage): Promise<void> => {
    if (m.outgoing || !bridge.bridges(m.chat)) return Promise.resolve();
    const next = work.then(() =>
      bridge.forward(m).catch((err: unknown) => {
        if (isPassingTelegramFailure(err)) throw err;
      }),
    );
    work = next.catch(() => undefined);
    return next;
  };
  return {
    bridge,
    remote: bridge.remote,
    capabilities: bridge.capabilities,
    get state() {
      return bridge.state;
    },
    onState: (l) => bridge.onState(l),
    onCheckpoint: (l) => bridge.onCheckpoint(l),
    async start() {
      await bridge.start();
      for (const c of options.chats) await bridge.announce(c.pairwise);
      // Messages a crash left stored but not forwarded go first.
      for (const m of device.unhandledMessages()) {
        await handle(m);
        device.markHandled(m.id);
      }
      device.setInboundHandler(handle);
      await device.startReceiving();
    },
    async stop() {
      device.setInboundHandler(undefined);
      await bridge.stop();
      await work;
    },
    idle: () => work,
  };
}
