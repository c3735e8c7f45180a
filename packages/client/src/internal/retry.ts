import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ContentSchema, type Content } from "@pairwise/core/proto";
import {
  newMessageId,
  type ContentInit,
  type DeviceAddress,
  type StateTransaction,
} from "@pairwise/core";
import type { PairwiseDevice } from "./device.ts";
import { syncCopyOf } from "./sync-copy.ts";

/** Sent plaintexts are kept this long so a device that could not decrypt can ask again. */
export const OUTBOX_TTL_MS = 7 * 24 * 60 * 60 * 1000;
/** A device asks for a message at most this many times. */
export const MAX_RETRIES = 5;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Writes a sent content to the durable outbox (for retry receipts) in the send's transaction. */
export function outboxRecord(
  device: PairwiseDevice,
  to: string,
  content: ContentInit,
): (tx: StateTransaction) => void {
  const message = create(ContentSchema, content);
  const record = {
    to,
    at: device.now(),
    content: Buffer.from(toBinary(ContentSchema, message)).toString("base64"),
  };
  return (tx) =>
    tx.put({
      table: "app",
      key: `outbox|${message.messageId}`,
      value: enc.encode(JSON.stringify(record)),
    });
}

/** The outbox entry of a message id, if still kept. */
function sentContent(
  device: PairwiseDevice,
  messageId: string,
): { to: string; content: Content } | undefined {
  const raw = device.store.get("app", `outbox|${messageId}`);
  if (!raw) return undefined;
  const r = JSON.parse(dec.decode(raw)) as { to: string; at: number; content: string };
  if (device.now() - r.at > OUTBOX_TTL_MS) return undefined;
  return { to: r.to, content: fromBinary(ContentSchema, Buffer.from(r.content, "base64")) };
}

/** Drops outbox entries older than the retention window. */
export function pruneOutbox(device: PairwiseDevice): void {
  const cutoff = device.now() - OUTBOX_TTL_MS;
  const stale = device.store
    .list("app", "outbox|")
    .filter(([, v]) => (JSON.parse(dec.decode(v)) as { at: number }).at < cutoff);
  if (stale.length)
    device.store.apply(stale.map(([key]) => ({ table: "app" as const, key, value: null })));
}

/**
 * This device could not decrypt `messageId` from `from`: drop the session with that device and
 * ask it, over a fresh session started from its prekey bundle, to send the message again.
 */
export async function requestRetry(
  device: PairwiseDevice,
  from: DeviceAddress,
  messageId: string,
): Promise<void> {
  const countKey = `retry|${from.accountId}|${from.deviceId}|${messageId}`;
  const count = Number(dec.decode(device.store.get("app", countKey) ?? enc.encode("0"))) + 1;
  if (count > MAX_RETRIES) return;
  device.store.apply([{ table: "app", key: countKey, value: enc.encode(String(count)) }]);
  await device.crypto.deleteSession(from);
  await device.sendContent(
    from.accountId,
    {
      messageId: newMessageId(),
      timestamp: BigInt(device.now()),
      body: { case: "retry", value: { messageId, count } },
    },
    { onlyDevices: [from.deviceId] },
  );
}

/**
 * Answers a retry request from the outbox: re-encrypts the message for the asking device only,
 * and only if that device belongs to the message's recipient or to this account.
 */
export async function answerRetry(
  device: PairwiseDevice,
  asking: DeviceAddress,
  messageId: string,
): Promise<boolean> {
  const sent = sentContent(device, messageId);
  if (!sent) return false;
  const me = device.requireIdentity();
  // Only a device the message was for may have it again: its recipient's or one of ours.
  // Anyone else asking (a server that knows message ids, a stranger) gets nothing.
  if (asking.accountId !== sent.to && asking.accountId !== me.accountId) return false;
  const content = sent.content;
  // A copy for one of our own devices keeps its sync marker, as the original copy had.
  const init: ContentInit =
    asking.accountId === me.accountId && sent.to !== me.accountId
      ? syncCopyOf(content, sent.to)
      : content;
  await device.sendContent(asking.accountId, init, { onlyDevices: [asking.deviceId] });
  return true;
}
