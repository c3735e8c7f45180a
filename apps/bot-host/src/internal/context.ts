import type { Readable } from "node:stream";
import type { Logger } from "pino";
import type { BotApi } from "./api.ts";
import { BotHostError } from "./errors.ts";
import type { BotGroupUpdate, BotMessage, BotReceipt, Chat, Sender, Update } from "./update.ts";

/** The bot a context belongs to. */
export interface BotIdentity {
  name: string;
  account: string;
  device: number;
}

/** Effects of one handling, recorded so a re-run after a crash does not repeat them. */
export interface EffectLog {
  /** The recorded result of effect number `n`, if it already happened. */
  get(n: number): unknown;
  /** Records that effect `n` happened, with its result (durably, before returning). */
  put(n: number, result: unknown): void;
  /** A stable id for the message effect `n` sends (the same on every re-run). */
  messageId(n: number): string;
}

/** Per-chat, per-plugin storage (loaded lazily, saved when handling completes). */
export interface SessionAccess {
  load(scope: string): Record<string, unknown>;
}

/** What the host gives a context. */
export interface ContextInit {
  update: Update;
  bot: BotIdentity;
  log: Logger;
  api: BotApi;
  effects: EffectLog;
  sessions: SessionAccess;
  /** Whether a failed effect should make the host run the handling again (no connection). */
  isRetryable?: (err: unknown) => boolean;
}

/**
 * What middleware gets for one update: the message, its chat and sender, replies that are
 * idempotent across crashes (a re-run after `kill -9` does not send a reply twice), per-chat
 * session storage and a logger.
 */
export class Context {
  readonly update: Update;
  readonly bot: BotIdentity;
  /** The bot's API (sends through the installed transformers; not idempotent by itself). */
  readonly api: BotApi;
  /** A pino logger for this bot and plugin; never log message bodies with it. */
  log: Logger;
  /** What `command` (the arguments) or `hears` (the regex match) matched. */
  match: string | RegExpMatchArray | undefined;
  /** The plugin whose middleware runs now (set by the host; selects the session). */
  scope = "bot";
  private readonly effects: EffectLog;
  private readonly sessions: SessionAccess;
  private effectCount = 0;
  private readonly isRetryable: (err: unknown) => boolean;
  /** @internal Set when an effect failed in a way that makes the host retry the handling. */
  interrupted = false;
  /** @internal Set with `interrupted` when the retry waits a backoff (`RetryLater`), not a connection. */
  deferred = false;

  constructor(init: ContextInit) {
    this.update = init.update;
    this.bot = init.bot;
    this.log = init.log;
    this.api = init.api;
    this.effects = init.effects;
    this.sessions = init.sessions;
    this.isRetryable = init.isRetryable ?? (() => false);
  }

  /** The incoming message, if the update is one. */
  get message(): BotMessage | undefined {
    return this.update.kind === "message" ? this.update.message : undefined;
  }

  /** The receipt, if the update is one. */
  get receipt(): BotReceipt | undefined {
    return this.update.kind === "receipt" ? this.update.receipt : undefined;
  }

  /** The group membership change, if the update is one. */
  get group(): BotGroupUpdate | undefined {
    return this.update.kind === "group" ? this.update.group : undefined;
  }

  /** The chat the update belongs to (the group chat, for a group membership change). */
  get chat(): Chat {
    switch (this.update.kind) {
      case "message":
        return this.update.message.chat;
      case "receipt":
        return this.update.receipt.chat;
      case "group":
        return this.update.group.chat;
    }
  }

  /**
   * Who sent it (account and device). For a group membership change: the account that made it,
   * with device 0 (the relay announces changes per account, not per device).
   */
  get from(): Sender {
    switch (this.update.kind) {
      case "message":
        return this.update.message.from;
      case "receipt":
        return this.update.receipt.from;
      case "group":
        return { account: this.update.group.by, device: 0 };
    }
  }

  private requireMessage(what: string): BotMessage {
    if (this.update.kind !== "message")
      throw new BotHostError("InvalidArgument", `${what} needs a message update`);
    return this.update.message;
  }

  /** This chat's storage for the current plugin: a JSON object, saved when handling completes. */
  get session(): Record<string, unknown> {
    return this.sessions.load(this.scope);
  }

  private async once<T>(run: (messageId: string) => Promise<T>): Promise<T> {
    const n = this.effectCount++;
    const done = this.effects.get(n);
    if (done !== undefined) return done as T;
    let result: T;
    try {
      result = await run(this.effects.messageId(n));
    } catch (err) {
      if (this.isRetryable(err)) this.interrupted = true;
      throw err;
    }
    this.effects.put(n, result);
    return result;
  }

  /** Replies in this chat. Returns the sent message's id. */
  async reply(text: string, options: { quote?: boolean } = {}): Promise<string> {
    const r = await this.once((messageId) =>
      this.api.sendText(this.chat.id, text, {
        messageId,
        ...(options.quote ? { replyTo: this.requireMessage("quote").id } : {}),
      }),
    );
    return r.id;
  }

  /** Replies with a file (a path, or a stream with a file name). Returns the message id. */
  async replyWithFile(
    file: string | Readable,
    options: { fileName?: string; caption?: string } = {},
  ): Promise<string> {
    const r = await this.once((messageId) =>
      this.api.sendFile(this.chat.id, file, { ...options, messageId }),
    );
    return r.id;
  }

  /** Reacts to the message with an emoji (an empty string removes the reaction). */
  async react(emoji: string): Promise<void> {
    const target = this.requireMessage("react").id;
    await this.once((messageId) =>
      this.api.call("react", {
        to: this.chat.id,
        target,
        emoji,
        messageId,
      }),
    );
  }

  /** Marks this chat read (read receipts to the senders). */
  async markRead(): Promise<void> {
    await this.once(() => this.api.call("markRead", { chat: this.chat.id }));
  }
}
