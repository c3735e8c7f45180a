import type { StateTransaction, KeyValueStore } from "@pairwise/core";

/** One message in a local conversation, as a device stores and shows it. */
export interface StoredMessage {
  id: string;
  /** The conversation: the other account's id, or `group:<id>`. */
  chat: string;
  fromAccount: string;
  fromDevice: number;
  /** Sent by this account (from this device or, for sync copies, another of ours). */
  outgoing: boolean;
  /** A copy of a message sent from another of our devices. */
  sync: boolean;
  text?: string;
  /** The id of the message this one replies to, if any. */
  replyTo?: string;
  /** Saved path of a received or sent file. */
  file?: string;
  timestamp: number;
  /** For outgoing messages: how far it got (from receipts). */
  status?: "sent" | "delivered" | "read";
  /** For incoming messages: whether this device marked it read. */
  read?: boolean;
}

const SEP = "|";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Key of a message in the `app` table: ordered by chat, then time, then id. */
function messageKey(m: Pick<StoredMessage, "chat" | "timestamp" | "id">): string {
  return `msg${SEP}${m.chat}${SEP}${String(m.timestamp).padStart(16, "0")}${SEP}${m.id}`;
}

/** Adds a message to the history inside a device transaction (so it commits with the session). */
export function recordMessage(tx: StateTransaction, message: StoredMessage): void {
  const key = messageKey(message);
  tx.put({ table: "app", key, value: encoder.encode(JSON.stringify(message)) });
  tx.put({ table: "app", key: `msgid${SEP}${message.id}`, value: encoder.encode(key) });
}

/** A stored message by id. */
export function findMessage(store: KeyValueStore, id: string): StoredMessage | undefined {
  const key = store.get("app", `msgid${SEP}${id}`);
  const raw = key && store.get("app", decoder.decode(key));
  return raw ? parse(raw) : undefined;
}

/** Rewrites a stored message (status or read flag changed). */
export function updateMessage(store: KeyValueStore, message: StoredMessage): void {
  store.apply([
    { table: "app", key: messageKey(message), value: encoder.encode(JSON.stringify(message)) },
  ]);
}

function parse(bytes: Uint8Array): StoredMessage | undefined {
  try {
    const m = JSON.parse(decoder.decode(bytes)) as StoredMessage;
    return typeof m.id === "string" && typeof m.chat === "string" ? m : undefined;
  } catch {
    return undefined;
  }
}

/** A conversation's messages, oldest first. */
export function listMessages(store: KeyValueStore, chat: string): StoredMessage[] {
  return store
    .list("app", `msg${SEP}${chat}${SEP}`)
    .map(([, v]) => parse(v))
    .filter((m): m is StoredMessage => m !== undefined);
}

/** Every stored message of every chat (for history sync), oldest first per chat. */
export function listAllMessages(store: KeyValueStore): StoredMessage[] {
  return store
    .list("app", `msg${SEP}`)
    .map(([, v]) => parse(v))
    .filter((m): m is StoredMessage => m !== undefined);
}
