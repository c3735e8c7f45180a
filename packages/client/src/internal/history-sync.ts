import {
  createHistorySyncParts,
  encodeHistoryBundle,
  openHistorySyncParts,
  newMessageId,
  type HistoryBundleInit,
} from "@pairwise/core";
import type { HistorySyncNotification } from "@pairwise/core/proto";
import type { PairwiseDevice } from "./device.ts";
import { listAllMessages, recordMessage, type StoredMessage } from "./history.ts";
import { downloadRaw, uploadRaw } from "./media.ts";
import { expectResult } from "./relay-connection.ts";

/** Messages per chat a new companion receives. */
const RECENT_PER_CHAT = 500;

/**
 * The primary sends a newly linked companion its recent conversations: waits (bounded) until the
 * companion has registered, bundles the history (compressed protobuf), encrypts and uploads it as
 * blobs, and sends the notification (blob ids, keys, digests) to that device only.
 */
export async function sendHistoryTo(
  device: PairwiseDevice,
  deviceId: number,
  timeoutMs = 60_000,
): Promise<boolean> {
  const conn = device.requireConnection();
  const me = device.requireIdentity();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const own = expectResult(
      await conn.request({ case: "listOwnDevices", value: {} }),
      "ownDevices",
    );
    if (own.devices.some((d) => d.deviceId === deviceId)) break;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
  const byChat = new Map<string, StoredMessage[]>();
  for (const m of listAllMessages(device.store)) {
    const list = byChat.get(m.chat) ?? [];
    list.push(m);
    byChat.set(m.chat, list);
  }
  const bundle: HistoryBundleInit = {
    chats: [...byChat].map(([chatId, messages]) => ({
      chatId,
      messages: messages.slice(-RECENT_PER_CHAT).map((m) => ({
        messageId: m.id,
        senderAccount: m.fromAccount,
        senderDevice: m.fromDevice,
        timestamp: BigInt(m.timestamp),
        fromMe: m.outgoing,
        content: {
          messageId: m.id,
          timestamp: BigInt(m.timestamp),
          body: { case: "text", value: { body: m.text ?? (m.file ? `[file] ${m.file}` : "") } },
        },
      })),
    })),
  };
  const notification = await createHistorySyncParts(await encodeHistoryBundle(bundle), {
    upload: (ciphertext) => uploadRaw(device, ciphertext),
  });
  await device.sendContent(
    me.accountId,
    {
      messageId: newMessageId(),
      timestamp: BigInt(Date.now()),
      body: { case: "historySync", value: notification },
    },
    { onlyDevices: [deviceId] },
  );
  return true;
}

/** The companion imports a history bundle into its local history (one transaction). */
export async function importHistory(
  device: PairwiseDevice,
  notification: HistorySyncNotification,
): Promise<number> {
  const bundle = await openHistorySyncParts(notification, (blobId) =>
    downloadRaw(device, blobId, 64 * 1024 * 1024),
  );
  const tx = device.crypto.state.begin();
  let n = 0;
  for (const chat of bundle.chats) {
    for (const m of chat.messages) {
      const body = m.content?.body;
      recordMessage(tx, {
        id: m.messageId,
        chat: chat.chatId,
        fromAccount: m.senderAccount,
        fromDevice: m.senderDevice,
        outgoing: m.fromMe,
        sync: true,
        ...(body?.case === "text" ? { text: body.value.body } : {}),
        timestamp: Number(m.timestamp),
      });
      n++;
    }
  }
  tx.commit();
  return n;
}
