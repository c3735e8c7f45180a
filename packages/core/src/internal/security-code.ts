import { createHash } from "node:crypto";
import { PublicKey } from "@signalapp/libsignal-client";
import { bytesEqual, concatBytes, toBytes, utf8 } from "./bytes.ts";
import { CoreError } from "./errors.ts";

/** SHA-512 iterations per half, as Signal uses (libsignal `Fingerprint.new(5200, …)`). */
export const SECURITY_CODE_ITERATIONS = 5200;

/** Version byte inside the scannable form (libsignal's `CombinedFingerprints.version`). */
export const SECURITY_CODE_SCANNABLE_VERSION = 1;

/** Size of the scannable form: libsignal's CombinedFingerprints protobuf with 32-byte halves. */
export const SECURITY_CODE_SCANNABLE_BYTES = 74;

const KEY_BYTES = 33;
const MAX_DEVICE_KEYS = 127;
const MAX_STABLE_ID_BYTES = 256;
const HALF_BYTES = 32;
// Hash-input version, always 0x0000 in libsignal whatever the scannable version is.
const HASH_VERSION = Uint8Array.of(0x00, 0x00);
// Fixed protobuf framing of CombinedFingerprints { 1: version, 2: { 1: local }, 3: { 1: remote } }.
const LOCAL_HEADER = Uint8Array.of(0x12, 0x22, 0x0a, 0x20);
const REMOTE_HEADER = Uint8Array.of(0x1a, 0x22, 0x0a, 0x20);

/** One side of a conversation, as its security code covers it. */
export interface SecurityCodeParty {
  /** The party's stable identifier (account id), 1..256 UTF-8 bytes. */
  readonly stableId: string;
  /** Account identity public key, 33 bytes as libsignal serializes it. */
  readonly accountKey: Uint8Array;
  /** Identity public keys of the party's valid devices (any order, no duplicates, at most 127). */
  readonly deviceKeys: readonly Uint8Array[];
}

/** Options of {@link computeSecurityCode}. */
export interface SecurityCodeOptions {
  readonly local: SecurityCodeParty;
  readonly remote: SecurityCodeParty;
}

/** A conversation's security code; both parties compute the same `digits`. */
export interface SecurityCode {
  /** 60 decimal digits. */
  readonly digits: string;
  /** The digits as 12 groups of 5. */
  readonly groups: readonly string[];
  /** The groups joined by single spaces. */
  readonly display: string;
  /** The QR form (74 bytes, local half first); compare with {@link compareScannableCodes}. */
  readonly scannable: Uint8Array<ArrayBuffer>;
}

function isPublicKey(bytes: Uint8Array): boolean {
  if (bytes.length !== KEY_BYTES || bytes[0] !== 0x05) return false;
  try {
    PublicKey.deserialize(toBytes(bytes));
    return true;
  } catch {
    return false;
  }
}

/** Account key followed by the device keys sorted bytewise (the "extended" identity input). */
function identityBytes(party: SecurityCodeParty): Uint8Array<ArrayBuffer> {
  if (!isPublicKey(party.accountKey))
    throw new CoreError("InvalidKey", "account key is not a public key");
  if (party.deviceKeys.length > MAX_DEVICE_KEYS)
    throw new CoreError("InvalidArgument", "too many device keys");
  for (const key of party.deviceKeys) {
    if (!isPublicKey(key)) throw new CoreError("InvalidKey", "device key is not a public key");
  }
  const sorted = [...party.deviceKeys].sort((a, b) => Buffer.compare(a, b));
  for (let i = 1; i < sorted.length; i++) {
    const previous = sorted[i - 1];
    const current = sorted[i];
    if (
      previous !== undefined &&
      current !== undefined &&
      Buffer.compare(previous, current) === 0
    ) {
      throw new CoreError("InvalidArgument", "device keys repeat");
    }
  }
  return concatBytes(party.accountKey, ...sorted);
}

/**
 * libsignal's iterated hash: SHA-512(0x0000 ‖ key ‖ stableId ‖ key), then 5199 times
 * SHA-512(previous ‖ key). With only an account key this is exactly libsignal's fingerprint half.
 */
function iteratedHash(party: SecurityCodeParty): Buffer {
  const key = identityBytes(party);
  const id = utf8(party.stableId);
  if (id.length < 1 || id.length > MAX_STABLE_ID_BYTES) {
    throw new CoreError("InvalidArgument", "stable id must be 1..256 bytes");
  }
  let hash = createHash("sha512").update(HASH_VERSION).update(key).update(id).update(key).digest();
  for (let i = 1; i < SECURITY_CODE_ITERATIONS; i++) {
    hash = createHash("sha512").update(hash).update(key).digest();
  }
  return hash;
}

/** First 30 bytes as six 5-byte big-endian numbers, each mod 100000, zero-padded. */
function digitsOf(hash: Uint8Array): string {
  let out = "";
  for (let chunk = 0; chunk < 6; chunk++) {
    let value = 0;
    for (let i = 0; i < 5; i++) value = value * 256 + (hash[chunk * 5 + i] ?? 0);
    out += String(value % 100_000).padStart(5, "0");
  }
  return out;
}

/**
 * Computes the security code of a conversation (Signal's numeric fingerprint, extended): each
 * party's half hashes its account key followed by its sorted device keys; the half whose 30
 * digits sort first comes first, so both sides see the same 60 digits. With no device keys the
 * digits and the scannable bytes equal libsignal's
 * `Fingerprint.new(5200, 1, localId, localKey, remoteId, remoteKey)`.
 *
 * @throws CoreError "InvalidKey" when a key is not a 33-byte libsignal public key,
 *   "InvalidArgument" for a bad stable id, repeated device keys or more than 127 of them.
 */
export function computeSecurityCode(options: SecurityCodeOptions): SecurityCode {
  const local = iteratedHash(options.local);
  const remote = iteratedHash(options.remote);
  const localDigits = digitsOf(local);
  const remoteDigits = digitsOf(remote);
  const digits =
    localDigits < remoteDigits ? localDigits + remoteDigits : remoteDigits + localDigits;
  const groups = digits.match(/\d{5}/g) ?? [];
  return {
    digits,
    groups,
    display: groups.join(" "),
    scannable: concatBytes(
      Uint8Array.of(0x08, SECURITY_CODE_SCANNABLE_VERSION),
      LOCAL_HEADER,
      local.subarray(0, HALF_BYTES),
      REMOTE_HEADER,
      remote.subarray(0, HALF_BYTES),
    ),
  };
}

function parseScannable(
  bytes: Uint8Array,
  what: string,
): { local: Uint8Array; remote: Uint8Array } {
  const remoteAt = 2 + LOCAL_HEADER.length + HALF_BYTES;
  if (
    bytes.length !== SECURITY_CODE_SCANNABLE_BYTES ||
    bytes[0] !== 0x08 ||
    !bytesEqual(bytes.subarray(2, 2 + LOCAL_HEADER.length), LOCAL_HEADER) ||
    !bytesEqual(bytes.subarray(remoteAt, remoteAt + REMOTE_HEADER.length), REMOTE_HEADER)
  ) {
    throw new CoreError("MalformedInput", `${what} is not a scannable security code`);
  }
  if (bytes[1] !== SECURITY_CODE_SCANNABLE_VERSION) {
    throw new CoreError("MalformedInput", `${what} has an unsupported version`);
  }
  return {
    local: bytes.subarray(2 + LOCAL_HEADER.length, remoteAt),
    remote: bytes.subarray(remoteAt + REMOTE_HEADER.length),
  };
}

/**
 * True when a scanned code describes the same pair as mine: their local half is my remote half
 * and their remote half is my local half (compared in constant time). My own code scanned back
 * does not match.
 *
 * @throws CoreError "MalformedInput" when either is not a 74-byte scannable code of version 1.
 */
export function compareScannableCodes(mine: Uint8Array, theirs: Uint8Array): boolean {
  const a = parseScannable(mine, "my code");
  const b = parseScannable(theirs, "scanned code");
  const sameRemote = bytesEqual(a.remote, b.local);
  const sameLocal = bytesEqual(a.local, b.remote);
  return sameRemote && sameLocal;
}
