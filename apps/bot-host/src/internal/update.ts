/** Who sent a message: the account and which of its devices. */
export interface Sender {
  account: string;
  device: number;
}

/** A chat: a 1:1 conversation (`id` is the other account) or a group (`id` is `group:<id>`). */
export interface Chat {
  id: string;
  type: "private" | "group";
}

/** An incoming message as plugins see it. */
export interface BotMessage {
  /** The message id (unique per sender; handling is idempotent by it). */
  id: string;
  chat: Chat;
  from: Sender;
  /** The text, or the caption of a file. */
  text?: string;
  /** Where a received file was saved. */
  file?: string;
  /** The id of the message this one replies to, if any. */
  replyTo?: string;
  /** The sender's timestamp (ms). */
  timestamp: number;
}

/** A delivery or read receipt for messages the bot's account sent. */
export interface BotReceipt {
  /** The 1:1 chat with the account that sent the receipt. */
  chat: Chat;
  from: Sender;
  kind: "delivered" | "read";
  /** The messages it is for. */
  messageIds: string[];
  timestamp: number;
}

/**
 * A group's membership changed, as the relay announced it: members joined (the bot's own
 * account too, when it was added) and/or left. Handled in the group chat's order, at most once
 * per group and revision.
 */
export interface BotGroupUpdate {
  /** The group chat (`group:<id>`). */
  chat: Chat & { type: "group" };
  /** The group id (without the `group:` prefix). */
  groupId: string;
  name: string;
  /** The group's revision after the change (1 when it was created). */
  revision: number;
  /** Every member after the change. */
  members: string[];
  /** Accounts that joined with this change (every member, when the group was created). */
  joined: string[];
  /** Accounts that were removed or left. */
  left: string[];
  /** The account that made the change (who added or removed them). */
  by: string;
  /** When the relay announced it (ms). */
  timestamp: number;
}

/** One thing that happened to a bot: an incoming message, a receipt, or a group change. */
export type Update =
  | { kind: "message"; message: BotMessage }
  | { kind: "receipt"; receipt: BotReceipt }
  | { kind: "group"; group: BotGroupUpdate };

/**
 * Filter queries for {@link Composer.on}: `"message"` (any incoming message),
 * `"message:text"` (with text), `"message:file"` (with a file), `"message:private"` (1:1),
 * `"message:group"` (in a group), `"receipt"` (any receipt), `"receipt:delivered"`,
 * `"receipt:read"`, `"group"` (any group membership change), `"group:join"` (members joined),
 * `"group:leave"` (members were removed or left).
 */
export type FilterQuery =
  | "message"
  | "message:text"
  | "message:file"
  | "message:private"
  | "message:group"
  | "receipt"
  | "receipt:delivered"
  | "receipt:read"
  | "group"
  | "group:join"
  | "group:leave";

/** The filter queries about receipts. */
export type ReceiptQuery = Extract<FilterQuery, `receipt${string}`>;

/** The filter queries about group membership changes. */
export type GroupQuery = Extract<FilterQuery, `group${string}`>;

/** What a group filter query guarantees about `ctx.group`. */
export type GroupFor<Q extends GroupQuery> = Q extends "group:join"
  ? BotGroupUpdate & { joined: [string, ...string[]] }
  : Q extends "group:leave"
    ? BotGroupUpdate & { left: [string, ...string[]] }
    : BotGroupUpdate;

/** What a receipt filter query guarantees about `ctx.receipt`. */
export type ReceiptFor<Q extends ReceiptQuery> = Q extends "receipt:delivered"
  ? BotReceipt & { kind: "delivered" }
  : Q extends "receipt:read"
    ? BotReceipt & { kind: "read" }
    : BotReceipt;

/** What a message filter query guarantees about `ctx.message`. */
export type MessageFor<Q extends FilterQuery> = Q extends "message:text"
  ? BotMessage & { text: string }
  : Q extends "message:file"
    ? BotMessage & { file: string }
    : Q extends "message:private"
      ? BotMessage & { chat: { type: "private" } }
      : Q extends "message:group"
        ? BotMessage & { chat: { type: "group" } }
        : BotMessage;

const QUERIES: ReadonlySet<string> = new Set([
  "message",
  "message:text",
  "message:file",
  "message:private",
  "message:group",
  "receipt",
  "receipt:delivered",
  "receipt:read",
  "group",
  "group:join",
  "group:leave",
]);

/** Whether `q` is a known filter query (plugins from config are checked at run time). */
export function isFilterQuery(q: unknown): q is FilterQuery {
  return typeof q === "string" && QUERIES.has(q);
}

/** Whether an update matches a filter query. */
export function matchesFilter(update: Update, query: FilterQuery): boolean {
  if (update.kind === "group") {
    if (query === "group") return true;
    if (query === "group:join") return update.group.joined.length > 0;
    if (query === "group:leave") return update.group.left.length > 0;
    return false;
  }
  if (update.kind === "receipt") {
    if (query === "receipt") return true;
    if (query === "receipt:delivered") return update.receipt.kind === "delivered";
    if (query === "receipt:read") return update.receipt.kind === "read";
    return false;
  }
  const m = update.message;
  switch (query) {
    case "message":
      return true;
    case "message:text":
      return typeof m.text === "string" && m.text !== "";
    case "message:file":
      return typeof m.file === "string";
    case "message:private":
      return m.chat.type === "private";
    case "message:group":
      return m.chat.type === "group";
    default:
      return false;
  }
}
