import { create } from "@bufbuild/protobuf";
import { PublicKey, type PrivateKey } from "@signalapp/libsignal-client";
import { DeviceListSchema, SignedDeviceListSchema } from "../gen/pairwise_pb.ts";
import {
  checkSignedDeviceIdentity,
  isValidAccountId,
  MAX_DEVICE_ID,
  PRIMARY_DEVICE_ID,
  type DeviceIdentityRejection,
} from "./adv.ts";
import { bytesEqual, concatBytes, toBytes } from "./bytes.ts";
import { CoreError } from "./errors.ts";
import { decodeProto, encodeProto } from "./proto.ts";

/** Signed device lists expire after 35 days: an expired list means "talk only to the primary". */
export const DEVICE_LIST_MAX_AGE_MS = 35 * 24 * 60 * 60 * 1000;
/** How far a list's timestamp may lie ahead of the verifier's clock (clock skew allowance). */
export const DEVICE_LIST_MAX_CLOCK_SKEW_MS = 24 * 60 * 60 * 1000;
/** At most one valid key index per possible device id. */
export const MAX_VALID_KEY_INDEXES = MAX_DEVICE_ID;

const MAX_KEY_INDEX = 0xffff_ffff;
const SIGNATURE_BYTES = 64;
const PUBLIC_KEY_BYTES = 33;
/** 127 key indexes of at most 5 bytes each plus the rest fit well under this. */
const MAX_SIGNED_LIST_BYTES = 2048;
const LIST_SIGNATURE_PREFIX = Uint8Array.of(0x06, 0x02);

/**
 * The valid devices of an account, by key index. The primary is key index 0 and is always
 * listed; every valid index is <= `currentKeyIndex` (the highest index ever assigned).
 */
export interface DeviceListInfo {
  readonly accountId: string;
  /** Milliseconds since the epoch; strictly increasing per account. */
  readonly timestamp: number;
  readonly currentKeyIndex: number;
  /** Sorted ascending, no duplicates, always containing 0. */
  readonly validKeyIndexes: readonly number[];
}

function isUint(value: number, max: number): boolean {
  return Number.isSafeInteger(value) && value >= 0 && value <= max;
}

function listProblem(info: DeviceListInfo): string | undefined {
  if (!isValidAccountId(info.accountId)) return "account id is invalid";
  if (!isUint(info.timestamp, Number.MAX_SAFE_INTEGER)) return "timestamp is invalid";
  if (!isUint(info.currentKeyIndex, MAX_KEY_INDEX)) return "current key index is invalid";
  const indexes = info.validKeyIndexes;
  if (indexes.length > MAX_VALID_KEY_INDEXES) return "too many valid key indexes";
  if (indexes[0] !== 0) return "key index 0 (the primary) must be valid";
  for (let i = 1; i < indexes.length; i++) {
    const index = indexes[i] ?? -1;
    if (!isUint(index, info.currentKeyIndex) || index <= (indexes[i - 1] ?? -1)) {
      return "valid key indexes must increase and not exceed the current key index";
    }
  }
  return undefined;
}

function encodeList(info: DeviceListInfo): Uint8Array<ArrayBuffer> {
  return encodeProto(
    DeviceListSchema,
    create(DeviceListSchema, {
      accountId: info.accountId,
      timestamp: BigInt(info.timestamp),
      currentKeyIndex: info.currentKeyIndex,
      validKeyIndexes: [...info.validKeyIndexes],
    }),
  );
}

/** `0x06 0x02 || DeviceList bytes`: what the account key signs. Does not throw. */
export function deviceListSignatureInput(details: Uint8Array): Uint8Array<ArrayBuffer> {
  return concatBytes(LIST_SIGNATURE_PREFIX, details);
}

/**
 * Signs a device list with the account key (primary only). `validKeyIndexes` may come in any
 * order; it is sorted and de-duplicated before signing, but must contain 0 (the primary).
 * Returns SignedDeviceList protobuf bytes.
 *
 * Throws `CoreError("InvalidArgument")` for an invalid account id, timestamp or key indexes.
 */
export function signDeviceList(
  accountPrivate: PrivateKey,
  info: DeviceListInfo,
): Uint8Array<ArrayBuffer> {
  const normalized: DeviceListInfo = {
    ...info,
    validKeyIndexes: [...new Set(info.validKeyIndexes)].sort((a, b) => a - b),
  };
  const problem = listProblem(normalized);
  if (problem !== undefined) throw new CoreError("InvalidArgument", `device list ${problem}`);
  const details = encodeList(normalized);
  return encodeProto(
    SignedDeviceListSchema,
    create(SignedDeviceListSchema, {
      details,
      accountSignature: accountPrivate.sign(deviceListSignatureInput(details)),
    }),
  );
}

/**
 * The timestamp for the next list the primary signs: `now`, or one past the previous list's
 * timestamp when the clock has not moved (or went back), so timestamps strictly increase.
 */
export function nextDeviceListTimestamp(previous: number | undefined, now: number): number {
  return previous === undefined ? now : Math.max(now, previous + 1);
}

/** Checks the signature, then parses the canonical DeviceList; no freshness checks. */
function openSignedDeviceList(
  bytes: Uint8Array,
  accountPublic: PublicKey,
  accountId: string,
): DeviceListInfo {
  const signed = decodeProto(
    SignedDeviceListSchema,
    bytes,
    "signed device list",
    MAX_SIGNED_LIST_BYTES,
  );
  let valid = false;
  if (signed.accountSignature.length === SIGNATURE_BYTES) {
    try {
      valid = accountPublic.verify(
        deviceListSignatureInput(signed.details),
        toBytes(signed.accountSignature),
      );
    } catch {
      valid = false;
    }
  }
  if (!valid) throw new CoreError("BadSignature", "device list signature does not verify");
  const list = decodeProto(DeviceListSchema, signed.details, "device list");
  if (list.timestamp > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new CoreError("MalformedInput", "device list timestamp is out of range");
  }
  const info: DeviceListInfo = {
    accountId: list.accountId,
    timestamp: Number(list.timestamp),
    currentKeyIndex: list.currentKeyIndex,
    validKeyIndexes: list.validKeyIndexes,
  };
  const problem = listProblem(info);
  if (problem !== undefined) throw new CoreError("MalformedInput", `device list ${problem}`);
  if (!bytesEqual(encodeList(info), signed.details)) {
    throw new CoreError("MalformedInput", "device list is not canonically encoded");
  }
  // A list this account key signed for another account id is no statement about this one.
  if (info.accountId !== accountId) {
    throw new CoreError("BadSignature", "device list names another account");
  }
  return info;
}

/** Options of {@link verifySignedDeviceList}. */
export interface VerifyDeviceListOptions {
  /** The account key the verifier has for this account (TOFU is the caller's job). */
  readonly accountPublic: PublicKey;
  readonly accountId: string;
  /** Timestamp of the newest list already accepted for this account, if any. */
  readonly lastSeenTimestamp?: number;
  /** The verifier's clock, ms since the epoch. */
  readonly now: number;
  /** Defaults to {@link DEVICE_LIST_MAX_AGE_MS}; may only be shorter. */
  readonly maxAgeMs?: number;
}

interface FreshnessOptions {
  readonly now: number;
  readonly lastSeen: number | undefined;
  readonly maxAgeMs: number | undefined;
}

/** Rollback, future and expiry checks; returns whether the list has expired. */
function isExpired(info: DeviceListInfo, options: FreshnessOptions): boolean {
  const { now, lastSeen } = options;
  const maxAgeMs = options.maxAgeMs ?? DEVICE_LIST_MAX_AGE_MS;
  if (!isUint(now, Number.MAX_SAFE_INTEGER)) {
    throw new CoreError("InvalidArgument", "now is invalid");
  }
  if (!Number.isSafeInteger(maxAgeMs) || maxAgeMs <= 0 || maxAgeMs > DEVICE_LIST_MAX_AGE_MS) {
    throw new CoreError("InvalidArgument", "max age must be 1 ms..35 days");
  }
  if (lastSeen !== undefined && !isUint(lastSeen, Number.MAX_SAFE_INTEGER)) {
    throw new CoreError("InvalidArgument", "last-seen timestamp is invalid");
  }
  if (info.timestamp > now + DEVICE_LIST_MAX_CLOCK_SKEW_MS) {
    throw new CoreError("MalformedInput", "device list timestamp is in the future");
  }
  if (lastSeen !== undefined && info.timestamp < lastSeen) {
    throw new CoreError("StaleDeviceList", "device list is older than one already seen");
  }
  return now - info.timestamp > maxAgeMs;
}

/**
 * Verifies a SignedDeviceList and returns what it says. A list with the same timestamp as the
 * last one seen is accepted (a re-fetch of the same list: only the account key can sign, and
 * the primary never signs two lists with one timestamp, see {@link nextDeviceListTimestamp}).
 *
 * Throws `CoreError`: "BadSignature" (signature fails, or the list names another account),
 * "StaleDeviceList" (timestamp below `lastSeenTimestamp`), "ExpiredDeviceList" (older than
 * `maxAgeMs`), "MalformedInput"/"InputTooLarge" (bad bytes, or a timestamp more than a day
 * ahead of `now`), "InvalidArgument" (bad options).
 */
export function verifySignedDeviceList(
  bytes: Uint8Array,
  options: VerifyDeviceListOptions,
): DeviceListInfo {
  const info = openSignedDeviceList(bytes, options.accountPublic, options.accountId);
  const freshness = {
    now: options.now,
    lastSeen: options.lastSeenTimestamp,
    maxAgeMs: options.maxAgeMs,
  };
  if (isExpired(info, freshness)) {
    throw new CoreError("ExpiredDeviceList", "device list has expired");
  }
  return info;
}

/** Why {@link selectTrustedDevices} refused a device. */
export type DeviceRejectionReason =
  DeviceIdentityRejection | "not-in-device-list" | "list-expired" | "duplicate";

/** A device the server claims the account has. */
export interface CandidateDevice {
  readonly deviceId: number;
  /** libsignal serialized public key, 33 bytes. */
  readonly identityPublic: Uint8Array;
  /** SignedDeviceIdentity bytes as the device published them. */
  readonly signedDeviceIdentity: Uint8Array;
}

/** A device that may be encrypted to. */
export interface TrustedDevice {
  readonly deviceId: number;
  readonly keyIndex: number;
  readonly identityPublic: Uint8Array;
}

/** The outcome of {@link selectTrustedDevices}. */
export interface TrustedDeviceSelection {
  /** The verified list; null when none was given. Returned even when expired. */
  readonly list: DeviceListInfo | null;
  /** True when the list is older than the max age: only the primary is trusted. */
  readonly listExpired: boolean;
  /** Sorted by device id. */
  readonly trusted: readonly TrustedDevice[];
  readonly rejected: readonly {
    readonly deviceId: number;
    readonly reason: DeviceRejectionReason;
  }[];
}

function parsePublicKey(bytes: Uint8Array): PublicKey | undefined {
  if (bytes.length !== PUBLIC_KEY_BYTES) return undefined;
  try {
    return PublicKey.deserialize(toBytes(bytes));
  } catch {
    return undefined;
  }
}

/**
 * THE fail-closed device selector (PROTOCOL.md "ADV"). A device is trusted only if its
 * SignedDeviceIdentity carries a valid account signature under `accountPublic` and a valid
 * device signature under its own identity key, names this account and its device id, and its
 * key index is valid in the signed device list. Device ids or key indexes that occur twice,
 * and identity keys shared by two devices, are all rejected as "duplicate".
 *
 * Without a list (`signedDeviceList: null`) or with an expired one, only the primary (device 1,
 * key index 0) can be trusted; the others are rejected ("not-in-device-list" / "list-expired").
 * A single bad device never throws: it is rejected with a reason.
 *
 * Throws `CoreError`: "BadSignature" when the list's signature fails (nothing is trusted),
 * "StaleDeviceList" for a rolled-back list, "MalformedInput"/"InputTooLarge" for bad list bytes,
 * "InvalidArgument" for bad options.
 */
export function selectTrustedDevices(options: {
  accountId: string;
  accountPublic: PublicKey;
  signedDeviceList: Uint8Array | null;
  devices: readonly CandidateDevice[];
  lastSeenListTimestamp?: number;
  now: number;
  maxAgeMs?: number;
}): TrustedDeviceSelection {
  let list: DeviceListInfo | null = null;
  let listExpired = false;
  if (options.signedDeviceList !== null) {
    list = openSignedDeviceList(options.signedDeviceList, options.accountPublic, options.accountId);
    listExpired = isExpired(list, {
      now: options.now,
      lastSeen: options.lastSeenListTimestamp,
      maxAgeMs: options.maxAgeMs,
    });
  }
  const valid = new Set(list?.validKeyIndexes ?? []);

  const rejected: { deviceId: number; reason: DeviceRejectionReason }[] = [];
  const idCounts = new Map<number, number>();
  for (const device of options.devices) {
    idCounts.set(device.deviceId, (idCounts.get(device.deviceId) ?? 0) + 1);
  }

  const accepted: TrustedDevice[] = [];
  for (const device of options.devices) {
    if ((idCounts.get(device.deviceId) ?? 0) > 1) {
      rejected.push({ deviceId: device.deviceId, reason: "duplicate" });
      continue;
    }
    const identityKey = parsePublicKey(device.identityPublic);
    if (
      identityKey === undefined ||
      !isUint(device.deviceId, MAX_DEVICE_ID) ||
      device.deviceId < 1
    ) {
      rejected.push({ deviceId: device.deviceId, reason: "malformed" });
      continue;
    }
    const check = checkSignedDeviceIdentity(device.signedDeviceIdentity, {
      accountPublic: options.accountPublic,
      deviceIdentityPublic: identityKey,
      accountId: options.accountId,
      deviceId: device.deviceId,
    });
    if (!check.ok) {
      rejected.push({ deviceId: device.deviceId, reason: check.reason });
    } else if (check.info.deviceId !== PRIMARY_DEVICE_ID && listExpired) {
      rejected.push({ deviceId: device.deviceId, reason: "list-expired" });
    } else if (check.info.deviceId !== PRIMARY_DEVICE_ID && !valid.has(check.info.keyIndex)) {
      rejected.push({ deviceId: device.deviceId, reason: "not-in-device-list" });
    } else {
      accepted.push({
        deviceId: device.deviceId,
        keyIndex: check.info.keyIndex,
        identityPublic: toBytes(device.identityPublic),
      });
    }
  }

  // Two verified devices with one key index or one identity key mean the account signed
  // contradictory statements: trust neither.
  const trusted = accepted.filter((device) => {
    const clash = accepted.some(
      (other) =>
        other !== device &&
        (other.keyIndex === device.keyIndex ||
          bytesEqual(other.identityPublic, device.identityPublic)),
    );
    if (clash) rejected.push({ deviceId: device.deviceId, reason: "duplicate" });
    return !clash;
  });
  trusted.sort((a, b) => a.deviceId - b.deviceId);
  return { list, listExpired, trusted, rejected };
}
