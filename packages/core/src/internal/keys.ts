import { randomInt } from "node:crypto";
import {
  IdentityKeyPair,
  KEMKeyPair,
  KyberPreKeyRecord,
  PreKeyRecord,
  PrivateKey,
  PublicKey,
  SignedPreKeyRecord,
} from "@signalapp/libsignal-client";
import { toBytes } from "./bytes.ts";
import { CoreError } from "./errors.ts";

/** When to refill one-time prekeys and rotate the signed prekey (PROTOCOL.md "Keys"). */
export interface PreKeyPolicy {
  /** One-time prekeys (and one-time Kyber prekeys) uploaded per batch. */
  batchSize: number;
  /** Refill when the server reports fewer than this many left: early, never at zero. */
  refillBelow: number;
  /** Rotate the signed prekey (and last-resort Kyber prekey) after this long. */
  signedPreKeyMaxAgeMs: number;
}

/** Defaults: batches of 100, refill below 20, rotate the signed prekey every 7 days. */
export const DEFAULT_PREKEY_POLICY: PreKeyPolicy = Object.freeze({
  batchSize: 100,
  refillBelow: 20,
  signedPreKeyMaxAgeMs: 7 * 24 * 60 * 60 * 1000,
});

/** libsignal prekey ids are 24-bit; ids wrap inside this range. */
export const MAX_PREKEY_ID = 0xffffff;

/** A public one-time prekey as a device uploads it. */
export interface PublicPreKey {
  id: number;
  publicKey: Uint8Array;
}

/** A public signed prekey (EC or Kyber): key plus the device identity key's signature over it. */
export interface PublicSignedPreKey {
  id: number;
  publicKey: Uint8Array;
  signature: Uint8Array;
}

/** A new account identity key (the ADV root; held by the primary only). */
export function createAccountKey(): IdentityKeyPair {
  return IdentityKeyPair.generate();
}

/** A new device identity key pair and a random 14-bit registration id (1..16380). */
export function createDeviceIdentity(): { identity: IdentityKeyPair; registrationId: number } {
  return { identity: IdentityKeyPair.generate(), registrationId: randomInt(1, 16381) };
}

function checkId(id: number): void {
  if (!Number.isInteger(id) || id < 1 || id > MAX_PREKEY_ID) {
    throw new CoreError("InvalidArgument", "prekey id out of range");
  }
}

/** The id after `id`, wrapping within 1..MAX_PREKEY_ID. */
export function nextPreKeyId(id: number): number {
  return id >= MAX_PREKEY_ID ? 1 : id + 1;
}

/** A signed prekey, signed by the device identity key. */
export function createSignedPreKey(
  identity: IdentityKeyPair,
  id: number,
  now: number,
): { record: SignedPreKeyRecord; public: PublicSignedPreKey } {
  checkId(id);
  const key = PrivateKey.generate();
  const publicKey = key.getPublicKey().serialize();
  const signature = identity.privateKey.sign(publicKey);
  return {
    record: SignedPreKeyRecord.new(id, now, key.getPublicKey(), key, signature),
    public: { id, publicKey, signature },
  };
}

/** A Kyber (ML-KEM) prekey signed by the device identity key: one-time or last-resort. */
export function createKyberPreKey(
  identity: IdentityKeyPair,
  id: number,
  now: number,
): { record: KyberPreKeyRecord; public: PublicSignedPreKey } {
  checkId(id);
  const pair = KEMKeyPair.generate();
  const publicKey = pair.getPublicKey().serialize();
  const signature = identity.privateKey.sign(publicKey);
  return {
    record: KyberPreKeyRecord.new(id, now, pair, signature),
    public: { id, publicKey, signature },
  };
}

/** `count` one-time EC prekeys with consecutive (wrapping) ids from `firstId`. */
export function createOneTimePreKeys(
  firstId: number,
  count: number,
): Array<{ record: PreKeyRecord; public: PublicPreKey }> {
  checkId(firstId);
  const out: Array<{ record: PreKeyRecord; public: PublicPreKey }> = [];
  let id = firstId;
  for (let i = 0; i < count; i++, id = nextPreKeyId(id)) {
    const key = PrivateKey.generate();
    out.push({
      record: PreKeyRecord.new(id, key.getPublicKey(), key),
      public: { id, publicKey: key.getPublicKey().serialize() },
    });
  }
  return out;
}

/**
 * How many one-time prekeys to upload now, given how many the server says it still holds:
 * a full batch's worth once the count drops below `refillBelow`, otherwise 0.
 */
export function preKeysToUpload(
  serverCount: number,
  policy: PreKeyPolicy = DEFAULT_PREKEY_POLICY,
): number {
  if (!Number.isInteger(serverCount) || serverCount < 0)
    throw new CoreError("InvalidArgument", "prekey count must be >= 0");
  return serverCount < policy.refillBelow ? policy.batchSize - serverCount : 0;
}

/** Whether a signed prekey created at `createdAt` should be replaced at `now`. */
export function shouldRotateSignedPreKey(
  createdAt: number,
  now: number,
  policy: PreKeyPolicy = DEFAULT_PREKEY_POLICY,
): boolean {
  return now - createdAt >= policy.signedPreKeyMaxAgeMs;
}

/**
 * Whether `signature` is `identityKey`'s signature over `message` (e.g. a signed prekey over its
 * public key). False for malformed keys or signatures; never throws. Lets a server check uploads
 * without importing libsignal.
 */
export function verifyIdentitySignature(
  identityKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  try {
    if (identityKey.length !== 33 || signature.length !== 64) return false;
    return PublicKey.deserialize(toBytes(identityKey)).verify(toBytes(message), toBytes(signature));
  } catch {
    return false;
  }
}
