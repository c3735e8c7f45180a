import { PrivateKey, PublicKey } from "@signalapp/libsignal-client";
import {
  acceptDeviceIdentity,
  signDeviceIdentity,
  verifySignedDeviceIdentity,
  type CompletedDeviceIdentity,
  type DeviceIdentityInfo,
} from "./adv.ts";
import { toBytes } from "./bytes.ts";
import { signDeviceList, verifySignedDeviceList, type DeviceListInfo } from "./device-list.ts";
import { CoreError } from "./errors.ts";

function publicKey(bytes: Uint8Array, what: string): PublicKey {
  try {
    if (bytes.length !== 33) throw new Error("length");
    return PublicKey.deserialize(toBytes(bytes));
  } catch (cause) {
    throw new CoreError("InvalidKey", `${what} does not decode`, { cause });
  }
}

/**
 * {@link verifySignedDeviceList} for callers that hold keys as bytes (a server, a client that
 * must not depend on libsignal): the account key is its 33-byte serialized form. Throws
 * `CoreError` ("InvalidKey", "BadSignature", "StaleDeviceList", "ExpiredDeviceList",
 * "MalformedInput").
 */
export function verifyDeviceListBytes(options: {
  signedDeviceList: Uint8Array;
  accountKey: Uint8Array;
  accountId: string;
  lastSeenTimestamp?: number;
  now: number;
}): DeviceListInfo {
  return verifySignedDeviceList(options.signedDeviceList, {
    accountPublic: publicKey(options.accountKey, "account key"),
    accountId: options.accountId,
    now: options.now,
    ...(options.lastSeenTimestamp === undefined
      ? {}
      : { lastSeenTimestamp: options.lastSeenTimestamp }),
  });
}

/**
 * {@link verifySignedDeviceIdentity} with keys as bytes: both signatures must verify, and the
 * identity must name `accountId` / `deviceId` when given. Throws `CoreError`.
 */
export function verifyDeviceIdentityBytes(options: {
  signedDeviceIdentity: Uint8Array;
  accountKey: Uint8Array;
  identityKey: Uint8Array;
  accountId?: string;
  deviceId?: number;
}): DeviceIdentityInfo {
  return verifySignedDeviceIdentity(options.signedDeviceIdentity, {
    accountPublic: publicKey(options.accountKey, "account key"),
    deviceIdentityPublic: publicKey(options.identityKey, "identity key"),
    ...(options.accountId === undefined ? {} : { accountId: options.accountId }),
    ...(options.deviceId === undefined ? {} : { deviceId: options.deviceId }),
  });
}

function privateKey(bytes: Uint8Array, what: string): PrivateKey {
  try {
    return PrivateKey.deserialize(toBytes(bytes));
  } catch (cause) {
    throw new CoreError("InvalidKey", `${what} does not decode`, { cause });
  }
}

/**
 * {@link signDeviceIdentity} (the primary vouching for a companion) with keys as bytes: the
 * stored 32-byte account private key and the companion's 33-byte identity key from its link URI.
 */
export function signCompanionIdentityBytes(options: {
  accountPrivateKey: Uint8Array;
  identity: DeviceIdentityInfo;
  companionIdentityKey: Uint8Array;
  linkSecret: Uint8Array;
}): Uint8Array {
  return signDeviceIdentity({
    accountPrivate: privateKey(options.accountPrivateKey, "account key"),
    identity: options.identity,
    deviceIdentityPublic: publicKey(options.companionIdentityKey, "companion identity key"),
    linkSecret: options.linkSecret,
  });
}

/** {@link signDeviceList} with the stored 32-byte account private key. */
export function signDeviceListBytes(
  accountPrivateKey: Uint8Array,
  info: DeviceListInfo,
): Uint8Array {
  return signDeviceList(privateKey(accountPrivateKey, "account key"), info);
}

/**
 * {@link acceptDeviceIdentity} (the companion checking the primary's signature and link HMAC,
 * then adding its own signature) with the account key as its 33 bytes.
 */
export function acceptDeviceIdentityBytes(options: {
  signed: Uint8Array;
  accountKey: Uint8Array;
  devicePrivate: PrivateKey;
  linkSecret: Uint8Array;
  expected?: { accountId?: string; deviceId?: number };
}): CompletedDeviceIdentity {
  return acceptDeviceIdentity({
    signed: options.signed,
    accountPublic: publicKey(options.accountKey, "account key"),
    devicePrivate: options.devicePrivate,
    linkSecret: options.linkSecret,
    ...(options.expected ? { expected: options.expected } : {}),
  });
}
