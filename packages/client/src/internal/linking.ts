import {
  acceptDeviceIdentityBytes,
  createEphemeralLinkKeys,
  createLinkSecret,
  decodeLinkUri,
  encodeLinkUri,
  nextDeviceListTimestamp,
  openProvisioningEnvelope,
  sealProvisioningMessage,
  signCompanionIdentityBytes,
  signDeviceListBytes,
  verifyDeviceListBytes,
} from "@pairwise/core";
import type { Push } from "@pairwise/core/relay-proto";
import type { PairwiseDevice, ServerInfo } from "./device.ts";
import { wireDeviceKeys } from "./device.ts";
import { ClientError } from "./errors.ts";
import { sendHistoryTo } from "./history-sync.ts";
import { refreshContact, verifiedCache } from "./sender.ts";
import { expectResult } from "./relay-connection.ts";

/** What the primary shows its user before approving a link. */
export interface LinkRequest {
  /** The companion's identity key (33 bytes), for display or comparison. */
  identityKey: Uint8Array;
}

/**
 * The companion side of linking: opens a provisioning channel, hands each link URI (it rotates)
 * to `onLinkCode`, waits for the primary's sealed envelope, checks the identity the primary
 * signed (account signature, link HMAC, listed in the new device list), adds its own signature
 * and registers. Throws `ClientError("Timeout")` when nobody approves in time.
 */
export async function linkAsCompanion(
  device: PairwiseDevice,
  options: {
    server: ServerInfo;
    deviceName: string;
    onLinkCode: (uri: string) => void;
    timeoutMs: number;
  },
): Promise<{ accountId: string; deviceId: number }> {
  if (device.crypto.account)
    throw new ClientError("InvalidArgument", "this device is already linked");
  const ephemeral = createEphemeralLinkKeys();
  const secret = createLinkSecret();
  let resolveEnvelope!: (envelope: Uint8Array) => void;
  const envelope = new Promise<Uint8Array>((resolve) => (resolveEnvelope = resolve));
  const show = (ref: string) =>
    options.onLinkCode(
      encodeLinkUri({
        ref,
        ephemeralPublic: ephemeral.publicKey,
        identityPublic: device.crypto.identityPublic,
        secret,
      }),
    );
  const conn = await device.connect(options.server, (push: Push) => {
    if (push.kind.case === "provisioningRef") show(push.kind.value.ref);
    else if (push.kind.case === "provisioning") resolveEnvelope(push.kind.value.envelope);
  });
  const { ref } = expectResult(
    await conn.request({ case: "provisioningOpen", value: {} }),
    "provisioningRef",
  );
  show(ref);
  let timer: NodeJS.Timeout | undefined;
  const sealed = await Promise.race([
    envelope,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new ClientError("Timeout", "the link code was not approved in time")),
        options.timeoutMs,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  const message = openProvisioningEnvelope({
    ephemeralPrivate: ephemeral.privateKey,
    envelope: sealed,
  });
  const accepted = acceptDeviceIdentityBytes({
    signed: message.signedDeviceIdentity,
    accountKey: message.accountIdentityKey,
    devicePrivate: device.crypto.identity.privateKey,
    linkSecret: secret,
    expected: { accountId: message.accountId, deviceId: message.deviceId },
  });
  const list = verifyDeviceListBytes({
    signedDeviceList: message.signedDeviceList,
    accountKey: message.accountIdentityKey,
    accountId: message.accountId,
    now: Date.now(),
  });
  if (!list.validKeyIndexes.includes(accepted.info.keyIndex))
    throw new ClientError("LinkFailed", "the new device list does not name this device");
  const upload = device.crypto.createKeyUpload({ oneTime: 100 });
  await conn.request({
    case: "registerCompanion",
    value: {
      accountId: message.accountId,
      deviceId: message.deviceId,
      device: wireDeviceKeys(upload, accepted.signed, options.deviceName),
    },
  });
  device.crypto.setAccount({
    accountId: message.accountId,
    deviceId: message.deviceId,
    accountPublic: message.accountIdentityKey,
    signedDeviceIdentity: accepted.signed,
  });
  return { accountId: message.accountId, deviceId: message.deviceId };
}

/**
 * The primary side: decodes the link URI, asks `confirm` (biometric, passkey or PIN on real
 * devices; a prompt in the CLI), reserves a device slot, signs the companion's identity and a new
 * device list naming it, and sends the sealed provisioning envelope. Throws `ClientError`:
 * "InvalidArgument" (bad URI, not the primary), "LinkFailed" (refused by the user), or the
 * server's refusal ("TooManyDevices", an expired code…).
 */
export async function approveLink(
  device: PairwiseDevice,
  uri: string,
  confirm: (request: LinkRequest) => Promise<boolean>,
  options: { historySync?: boolean; historyTimeoutMs?: number } = {},
): Promise<{ deviceId: number }> {
  const account = device.crypto.account;
  if (!account?.accountPrivate || account.deviceId !== 1)
    throw new ClientError("InvalidArgument", "only the primary device can link companions");
  let link;
  try {
    link = decodeLinkUri(uri);
  } catch (cause) {
    throw new ClientError("InvalidArgument", "not a valid link code", { cause });
  }
  // Ask first: a refused link must not use up a device id.
  if (!(await confirm({ identityKey: link.identityPublic })))
    throw new ClientError("LinkFailed", "linking was not confirmed");
  const conn = await device.connect();
  const slot = expectResult(
    await conn.request({ case: "allocateCompanion", value: {} }),
    "companionSlot",
  );
  const signed = signCompanionIdentityBytes({
    accountPrivateKey: account.accountPrivate,
    identity: {
      accountId: account.accountId,
      deviceId: slot.deviceId,
      keyIndex: slot.keyIndex,
      createdAt: Date.now(),
    },
    companionIdentityKey: link.identityPublic,
    linkSecret: link.secret,
  });
  const current = device.ownDeviceList();
  const valid = [...new Set([...current.valid, slot.keyIndex])].sort((a, b) => a - b);
  const timestamp = nextDeviceListTimestamp(current.timestamp, Date.now());
  const list = signDeviceListBytes(account.accountPrivate, {
    accountId: account.accountId,
    timestamp,
    currentKeyIndex: Math.max(...valid),
    validKeyIndexes: valid,
  });
  const envelope = sealProvisioningMessage({
    companionEphemeralPublic: link.ephemeralPublic,
    message: {
      accountId: account.accountId,
      deviceId: slot.deviceId,
      accountIdentityKey: account.accountPublic,
      signedDeviceIdentity: signed,
      signedDeviceList: list,
      primaryName: "primary",
    },
  });
  await conn.request({
    case: "provisionCompanion",
    value: { ref: link.ref, envelope, signedDeviceList: list, deviceId: slot.deviceId },
  });
  device.setOwnDeviceList({
    timestamp,
    valid,
    keyIndexes: { ...current.keyIndexes, [slot.deviceId]: slot.keyIndex },
  });
  verifiedCache(device).delete(account.accountId);
  if (options.historySync !== false) {
    await sendHistoryTo(device, slot.deviceId, options.historyTimeoutMs ?? 60_000);
  }
  return { deviceId: slot.deviceId };
}

/** The primary removes a companion: a new signed list without it, then the server deletes and disconnects it. */
export async function unlinkDevice(device: PairwiseDevice, deviceId: number): Promise<void> {
  const account = device.crypto.account;
  if (!account?.accountPrivate || account.deviceId !== 1)
    throw new ClientError("InvalidArgument", "only the primary device can unlink devices");
  const current = device.ownDeviceList();
  const keyIndex = current.keyIndexes[deviceId];
  if (keyIndex === undefined || deviceId === 1)
    throw new ClientError("InvalidArgument", "no such companion");
  const valid = current.valid.filter((k) => k !== keyIndex);
  const timestamp = nextDeviceListTimestamp(current.timestamp, Date.now());
  const list = signDeviceListBytes(account.accountPrivate, {
    accountId: account.accountId,
    timestamp,
    currentKeyIndex: Math.max(...current.valid),
    validKeyIndexes: valid,
  });
  await (
    await device.connect()
  ).request({ case: "removeDevice", value: { deviceId, signedDeviceList: list } });
  const keyIndexes = Object.fromEntries(
    Object.entries(current.keyIndexes).filter(([id]) => Number(id) !== deviceId),
  );
  device.setOwnDeviceList({ timestamp, valid, keyIndexes });
  await device.crypto.deleteSession({ accountId: account.accountId, deviceId });
  // Refetch our own list now: the persisted cache must stop trusting the removed device, so a
  // message it queued before removal is dropped, not attempted.
  verifiedCache(device).delete(account.accountId);
  await refreshContact(device, account.accountId);
}
