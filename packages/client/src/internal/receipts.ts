import { newMessageId } from "@pairwise/core";
import { Receipt_Kind } from "@pairwise/core/proto";
import type { PairwiseDevice } from "./device.ts";
import { findMessage, listMessages, updateMessage } from "./history.ts";

const RANK = { sent: 0, delivered: 1, read: 2 } as const;
const pending = new WeakMap<
  PairwiseDevice,
  { ids: Map<string, string[]>; timer?: NodeJS.Timeout }
>();

/** Flush delay for delivery receipts: they are batched per sender. */
const DELIVERY_BATCH_MS = 200;

async function sendReceipt(
  device: PairwiseDevice,
  to: string,
  kind: Receipt_Kind,
  messageIds: string[],
): Promise<void> {
  if (messageIds.length === 0) return;
  await device.sendContent(to, {
    messageId: newMessageId(),
    timestamp: BigInt(device.now()),
    body: { case: "receipt", value: { kind, messageIds } },
  });
}

/** Queues a delivery receipt for a stored incoming message (sent in batches, off the receive path). */
export function queueDeliveryReceipt(
  device: PairwiseDevice,
  from: string,
  messageId: string,
): void {
  let p = pending.get(device);
  if (!p) pending.set(device, (p = { ids: new Map() }));
  p.ids.set(from, [...(p.ids.get(from) ?? []), messageId]);
  p.timer ??= setTimeout(() => {
    const batch = p.ids;
    p.ids = new Map();
    delete p.timer;
    for (const [to, ids] of batch)
      void sendReceipt(device, to, Receipt_Kind.DELIVERED, ids).catch(() => undefined);
  }, DELIVERY_BATCH_MS);
  p.timer.unref();
}

/** Sends queued delivery receipts now (before a short-lived process exits). */
export async function flushReceipts(device: PairwiseDevice): Promise<void> {
  const p = pending.get(device);
  if (!p) return;
  if (p.timer) clearTimeout(p.timer);
  delete p.timer;
  const batch = p.ids;
  p.ids = new Map();
  for (const [to, ids] of batch) await sendReceipt(device, to, Receipt_Kind.DELIVERED, ids);
}

/** Applies a receipt from `from` to our outgoing messages it names (status only moves forward). */
export function applyReceipt(
  device: PairwiseDevice,
  from: string,
  kind: Receipt_Kind,
  messageIds: string[],
): void {
  const status =
    kind === Receipt_Kind.READ ? "read" : kind === Receipt_Kind.DELIVERED ? "delivered" : undefined;
  if (!status) return;
  for (const id of messageIds) {
    const m = findMessage(device.store, id);
    if (!m?.outgoing || m.chat !== from) continue;
    if (RANK[m.status ?? "sent"] < RANK[status]) updateMessage(device.store, { ...m, status });
  }
}

/** Marks a conversation read and sends read receipts to the senders of what was unread. */
export async function markRead(device: PairwiseDevice, chat: string): Promise<number> {
  const unread = listMessages(device.store, chat).filter((m) => !m.outgoing && !m.read);
  const bySender = new Map<string, string[]>();
  for (const m of unread) {
    updateMessage(device.store, { ...m, read: true });
    bySender.set(m.fromAccount, [...(bySender.get(m.fromAccount) ?? []), m.id]);
  }
  for (const [to, ids] of bySender) await sendReceipt(device, to, Receipt_Kind.READ, ids);
  return unread.length;
}
