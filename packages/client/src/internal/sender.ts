import {
  decodePreKeyBundle,
  encryptContents,
  newMessageId,
  verifyDevices,
  type ContentInit,
  type EncryptTarget,
  type StateTransaction,
  type TrustedDevice,
} from "@pairwise/core";
import type { PairwiseDevice } from "./device.ts";
import { ClientError } from "./errors.ts";
import { uploadFile } from "./media.ts";
import { isRemoteAddress, parseRemoteAddress } from "./remote-address.ts";
import { expectResult } from "./relay-connection.ts";
import { outboxRecord } from "./retry.ts";
import { syncCopyOf } from "./sync-copy.ts";

const MAX_SEND_ATTEMPTS = 4;

/** Fetches an account's devices and verifies them (TOFU + ADV); returns the trusted ones. */
export async function refreshContact(
  device: PairwiseDevice,
  accountId: string,
): Promise<VerifiedContact> {
  const set = expectResult(
    await device.requireConnection().request({ case: "fetchDevices", value: { accountId } }),
    "devices",
  );
  const me = device.crypto.account;
  const remote = parseRemoteAddress(accountId);
  const verified = verifyDevices(
    device.crypto.state,
    {
      accountId,
      ...(remote ? { signedAccountId: remote.name } : {}),
      accountPublic: set.accountKey,
      signedDeviceList: set.signedDeviceList,
      devices: set.devices.map((d) => ({
        deviceId: d.deviceId,
        identityPublic: d.identityKey,
        signedDeviceIdentity: d.signedDeviceIdentity,
      })),
    },
    {
      now: device.now(),
      ...(me && me.accountId === accountId ? { own: { accountPublic: me.accountPublic } } : {}),
    },
  );
  if (verified.event?.type === "account-key-changed")
    device.emit("account-key-changed", { accountId });
  const contact = {
    trusted: verified.trusted,
    registrations: new Map(set.devices.map((d) => [d.deviceId, d.registrationId])),
  };
  verifiedCache(device).set(accountId, contact);
  return contact;
}

/** An account's devices as last fetched and verified. */
export interface VerifiedContact {
  trusted: readonly TrustedDevice[];
  registrations: Map<number, number>;
}

const caches = new WeakMap<PairwiseDevice, Map<string, VerifiedContact>>();

/**
 * Verified device sets kept in memory between sends: fetching and verifying an account's list
 * (an XEdDSA check per signature) on every message would dominate sending. The server's device
 * set check keeps the cache honest: a mismatch drops the entry and the send refetches.
 */
export function verifiedCache(device: PairwiseDevice): Map<string, VerifiedContact> {
  let c = caches.get(device);
  if (!c) caches.set(device, (c = new Map<string, VerifiedContact>()));
  return c;
}

/** The cached verified devices of an account, else fetched and verified now. */
export async function knownContact(
  device: PairwiseDevice,
  accountId: string,
): Promise<VerifiedContact> {
  return verifiedCache(device).get(accountId) ?? (await refreshContact(device, accountId));
}

/** Targets for encrypting to an account's trusted devices (sessions started from bundles where needed). */
export async function encryptTargets(
  device: PairwiseDevice,
  accountId: string,
  exclude?: number,
  wanted?: readonly number[],
): Promise<{ targets: EncryptTarget[]; registrations: Map<number, number> }> {
  let contact = await knownContact(device, accountId);
  // A device we are asked to reach that the cached set lacks (just linked): fetch again.
  if (wanted?.some((id) => !contact.trusted.some((d) => d.deviceId === id)))
    contact = await refreshContact(device, accountId);
  const { trusted, registrations } = contact;
  const devices = trusted.filter((d) => d.deviceId !== exclude);
  const need = devices.filter(
    (d) => !device.crypto.hasSession({ accountId, deviceId: d.deviceId }),
  );
  const bundles = need.length
    ? expectResult(
        await device.requireConnection().request({
          case: "fetchPrekeyBundles",
          value: { accountId, deviceIds: need.map((d) => d.deviceId) },
        }),
        "prekeyBundles",
      ).bundles
    : [];
  // Bundles come back only for devices the server still has, each naming its device id.
  const byDevice = new Map<number, Uint8Array>();
  for (const b of bundles) byDevice.set(decodePreKeyBundle(b).info.deviceId, b);
  const targets: EncryptTarget[] = [];
  for (const d of devices) {
    const hasSession = !need.includes(d);
    const bundle = byDevice.get(d.deviceId);
    if (!hasSession && !bundle) {
      // Gone from the server: our cached set is stale. Skip it; the server's device-set check
      // refuses the send if anything else is off, and the retry refetches the set.
      verifiedCache(device).delete(accountId);
      continue;
    }
    targets.push({
      address: { accountId, deviceId: d.deviceId },
      identityPublic: d.identityPublic,
      ...(bundle ? { bundle } : {}),
    });
  }
  return { targets, registrations };
}

/**
 * Sends a text to every device of `to` and a sync copy to this account's other devices.
 * Returns the message id. See {@link PairwiseDevice.sendContent}.
 */
export async function sendText(
  device: PairwiseDevice,
  to: string,
  text: string,
  options: { replyTo?: string; messageId?: string } = {},
): Promise<string> {
  const me = device.requireIdentity();
  const id = options.messageId ?? newMessageId();
  const timestamp = device.nextMessageTimestamp();
  const content: ContentInit = {
    messageId: id,
    timestamp: BigInt(timestamp),
    body: { case: "text", value: { body: text, replyTo: options.replyTo ?? "" } },
  };
  // The outbox entry (for answering retry receipts) commits with the encryption.
  await sendContent(device, to, content, { record: outboxRecord(device, to, content) });
  device.remember({
    id,
    chat: to,
    fromAccount: me.accountId,
    fromDevice: me.deviceId,
    outgoing: true,
    sync: false,
    text,
    timestamp,
  });
  return id;
}

/**
 * Sends a file: encrypted with a fresh key in the blob format while it uploads (bounded memory
 * for any size), then a media pointer (blob id, key, digest) to every device like a text.
 */
export async function sendFile(
  device: PairwiseDevice,
  to: string,
  path: string,
  options: { caption?: string; messageId?: string } = {},
): Promise<string> {
  const me = device.requireIdentity();
  const pointer = await uploadFile(device, path);
  const id = options.messageId ?? newMessageId();
  const timestamp = device.nextMessageTimestamp();
  const content: ContentInit = {
    messageId: id,
    timestamp: BigInt(timestamp),
    body: { case: "media", value: { ...pointer, caption: options.caption ?? "" } },
  };
  // The outbox entry (for answering retry receipts) commits with the encryption.
  await sendContent(device, to, content, { record: outboxRecord(device, to, content) });
  device.remember({
    id,
    chat: to,
    fromAccount: me.accountId,
    fromDevice: me.deviceId,
    outgoing: true,
    sync: false,
    file: path,
    ...(options.caption ? { text: options.caption } : {}),
    timestamp,
  });
  return id;
}

/**
 * Client fan-out of one content: encrypted separately for every trusted device of `to` and,
 * as a sync copy naming `to`, for this account's other devices (unless `onlyDevices` limits the
 * recipients), submitted in one request. On a device-set mismatch the sessions of extra or stale
 * devices are dropped, the device lists fetched again and the send retried, up to 4 times.
 */
export async function sendContent(
  device: PairwiseDevice,
  to: string,
  content: ContentInit,
  options: { onlyDevices?: number[]; record?: (tx: StateTransaction) => void } = {},
): Promise<void> {
  const me = device.requireIdentity();
  const only = options.onlyDevices;
  for (let attempt = 1; ; attempt++) {
    const recipient = await encryptTargets(
      device,
      to,
      to === me.accountId ? me.deviceId : undefined,
      only,
    );
    const own =
      to === me.accountId || only
        ? { targets: [], registrations: new Map<number, number>() }
        : await encryptTargets(device, me.accountId, me.deviceId);
    const recipientTargets = only
      ? recipient.targets.filter((t) => only.includes(t.address.deviceId))
      : recipient.targets;
    // Fail closed: a contact with no device we may encrypt to (a changed account key not yet
    // accepted, or no verified device) gets nothing, and the caller is told.
    if (to !== me.accountId && recipientTargets.length === 0 && recipient.targets.length === 0) {
      throw new ClientError(
        "UntrustedContact",
        "no verified device of that contact: its security code may have changed",
      );
    }
    // The copies for the recipient and the sync copies for our own devices (and the caller's
    // record, e.g. the outbox entry) in one transaction: one commit per fan-out.
    const [forRecipient = [], forOwn = []] = await encryptContents(
      device.crypto,
      [
        { targets: recipientTargets, content },
        { targets: own.targets, content: syncCopyOf(content, to) },
      ],
      options.record ? { record: options.record } : {},
    );
    const copies = [
      ...forRecipient.map((c) => ({
        c,
        reg: recipient.registrations.get(c.address.deviceId) ?? 0,
      })),
      ...forOwn.map((c) => ({ c, reg: own.registrations.get(c.address.deviceId) ?? 0 })),
    ];
    if (copies.length === 0) return;
    try {
      await device.requireConnection().request({
        case: "submitMessage",
        value: {
          messageId: content.messageId ?? "",
          targeted: only !== undefined,
          federated: isRemoteAddress(to),
          copies: copies.map(({ c, reg }) => ({
            accountId: c.address.accountId,
            deviceId: c.address.deviceId,
            registrationId: reg,
            type: c.type === "prekey" ? 1 : 2,
            body: c.body,
          })),
        },
      });
      return;
    } catch (err) {
      // A send limited to some devices names only those: the server's set check does not apply.
      if (
        !ClientError.is(err, "ServerRefused") ||
        err.serverCode !== "MismatchedDevices" ||
        attempt >= MAX_SEND_ATTEMPTS ||
        only
      )
        throw err;
      for (const m of err.mismatches ?? []) {
        verifiedCache(device).delete(m.accountId);
        for (const d of [...m.extra, ...m.stale])
          await device.crypto.deleteSession({ accountId: m.accountId, deviceId: d });
      }
    }
  }
}
