import { createCipheriv, randomBytes } from "node:crypto";
import { toBytes } from "./bytes.ts";
import { CoreError } from "./errors.ts";

/** AES_CM_128_HMAC_SHA1_80 master key length. */
export const SRTP_MASTER_KEY_BYTES = 16;
/** AES_CM_128_HMAC_SHA1_80 master salt length. */
export const SRTP_MASTER_SALT_BYTES = 14;
/** What a call offer carries per callee device: master key || master salt. */
export const SRTP_MASTER_SECRET_BYTES = SRTP_MASTER_KEY_BYTES + SRTP_MASTER_SALT_BYTES;
/** Upper bound on callee devices per call, so a bad count cannot exhaust memory. */
export const MAX_CALLEE_DEVICES = 1024;

const AUTH_KEY_BYTES = 20; // HMAC-SHA1 session key
const MAX_SRTP_INDEX = (1n << 48n) - 1n;
const MAX_KDR = 1 << 24;
const MAX_KEYSTREAM_BYTES = 16 * 65_536; // one 16-bit block counter's worth

/** RFC 3711 section 4.3 labels. */
const LABEL = {
  rtpCipher: 0,
  rtpAuth: 1,
  rtpSalt: 2,
  rtcpCipher: 3,
  rtcpAuth: 4,
  rtcpSalt: 5,
} as const;

/** Randomness source; defaults to node:crypto `randomBytes`. */
export type RandomBytes = (length: number) => Uint8Array;

const defaultRandom: RandomBytes = (length) => randomBytes(length);

function freshSecret(random: RandomBytes): Uint8Array<ArrayBuffer> {
  const secret = random(SRTP_MASTER_SECRET_BYTES);
  if (secret.length !== SRTP_MASTER_SECRET_BYTES) {
    throw new CoreError("InvalidArgument", "random source returned the wrong length");
  }
  return toBytes(secret);
}

/**
 * Fresh SRTP master secrets (30 bytes each: 16-byte master key || 14-byte master salt, for
 * AES_CM_128_HMAC_SHA1_80), one per callee device, each sent in that device's encrypted call
 * offer. Given a count, returns that many secrets; given a list of device keys (any values,
 * e.g. "account:device"), returns a map from each to its own secret.
 *
 * Throws `CoreError("InvalidArgument")` for a count or list outside 1..{@link MAX_CALLEE_DEVICES},
 * duplicate keys, or a random source returning the wrong length.
 */
export function createCallKeys(
  count: number,
  options?: { random?: RandomBytes },
): Uint8Array<ArrayBuffer>[];
export function createCallKeys<K>(
  callees: readonly K[],
  options?: { random?: RandomBytes },
): Map<K, Uint8Array<ArrayBuffer>>;
export function createCallKeys<K>(
  callees: number | readonly K[],
  options: { random?: RandomBytes } = {},
): Uint8Array<ArrayBuffer>[] | Map<K, Uint8Array<ArrayBuffer>> {
  const random = options.random ?? defaultRandom;
  const count = typeof callees === "number" ? callees : callees.length;
  if (!Number.isSafeInteger(count) || count < 1 || count > MAX_CALLEE_DEVICES) {
    throw new CoreError("InvalidArgument", "callee device count must be 1..1024");
  }
  if (typeof callees === "number") return Array.from({ length: count }, () => freshSecret(random));
  const keys = new Map<K, Uint8Array<ArrayBuffer>>();
  for (const callee of callees) {
    if (keys.has(callee)) throw new CoreError("InvalidArgument", "callee devices must be unique");
    keys.set(callee, freshSecret(random));
  }
  return keys;
}

/** An SRTP master key and salt. */
export interface SrtpMaster {
  readonly masterKey: Uint8Array;
  readonly masterSalt: Uint8Array;
}

/**
 * Splits a 30-byte master secret from a call offer into master key (16) and salt (14).
 *
 * Throws `CoreError("MalformedInput")` when the secret is not 30 bytes.
 */
export function splitSrtpMasterSecret(secret: Uint8Array): SrtpMaster {
  if (secret.length !== SRTP_MASTER_SECRET_BYTES) {
    throw new CoreError("MalformedInput", "SRTP master secret must be 30 bytes");
  }
  return {
    masterKey: toBytes(secret.subarray(0, SRTP_MASTER_KEY_BYTES)),
    masterSalt: toBytes(secret.subarray(SRTP_MASTER_KEY_BYTES)),
  };
}

/**
 * AES-CM keystream (RFC 3711 section 4.1.1): `AES_k(iv) || AES_k(iv + 1) || ...` truncated to
 * `length` bytes, the counter being the whole 128-bit block taken big-endian.
 *
 * Throws `CoreError("InvalidArgument")` for a key that is not 16 bytes, an IV that is not 16
 * bytes, or a length outside 0..1 MiB.
 */
export function aesCmKeystream(
  key: Uint8Array,
  iv: Uint8Array,
  length: number,
): Uint8Array<ArrayBuffer> {
  if (key.length !== SRTP_MASTER_KEY_BYTES) {
    throw new CoreError("InvalidArgument", "AES-CM key must be 16 bytes");
  }
  if (iv.length !== 16) throw new CoreError("InvalidArgument", "AES-CM IV must be 16 bytes");
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_KEYSTREAM_BYTES) {
    throw new CoreError("InvalidArgument", "AES-CM keystream length out of range");
  }
  const cipher = createCipheriv("aes-128-ctr", key, iv);
  return toBytes(Buffer.concat([cipher.update(new Uint8Array(length)), cipher.final()]));
}

/**
 * The SRTP packet IV of RFC 3711 section 4.1.1: `(salt * 2^16) XOR (SSRC * 2^64) XOR (index *
 * 2^16)` for a 14-byte session salt, 32-bit SSRC and 48-bit packet index.
 *
 * Throws `CoreError("InvalidArgument")` for values out of range.
 */
export function srtpPacketIv(options: {
  sessionSalt: Uint8Array;
  ssrc: number;
  index: bigint;
}): Uint8Array<ArrayBuffer> {
  const { sessionSalt, ssrc, index } = options;
  if (sessionSalt.length !== SRTP_MASTER_SALT_BYTES) {
    throw new CoreError("InvalidArgument", "session salt must be 14 bytes");
  }
  if (!Number.isInteger(ssrc) || ssrc < 0 || ssrc > 0xffff_ffff) {
    throw new CoreError("InvalidArgument", "SSRC out of range");
  }
  if (index < 0n || index > MAX_SRTP_INDEX) {
    throw new CoreError("InvalidArgument", "SRTP index out of range");
  }
  const iv = new Uint8Array(16);
  iv.set(sessionSalt);
  const view = new DataView(iv.buffer);
  view.setUint32(4, view.getUint32(4) ^ ssrc);
  xorBigEndian(iv, 13, index, 6);
  return iv;
}

/** XORs the low `width` bytes of `value` into `target`, ending (least significant) at `last`. */
function xorBigEndian(target: Uint8Array, last: number, value: bigint, width: number): void {
  for (let i = 0; i < width; i++) {
    const at = last - i;
    target[at] = (target[at] ?? 0) ^ Number((value >> BigInt(8 * i)) & 0xffn);
  }
}

function checkMaster(master: SrtpMaster): void {
  if (master.masterKey.length !== SRTP_MASTER_KEY_BYTES) {
    throw new CoreError("InvalidArgument", "SRTP master key must be 16 bytes");
  }
  if (master.masterSalt.length !== SRTP_MASTER_SALT_BYTES) {
    throw new CoreError("InvalidArgument", "SRTP master salt must be 14 bytes");
  }
}

/**
 * One RFC 3711 section 4.3.1 PRF output: `x = (label || r) XOR master salt` right-aligned with
 * r = index DIV kdr as a 48-bit field (0 when kdr = 0), then AES-CM(master key, x * 2^16).
 * The label sits in byte 7 of the IV for every label, as in libsrtp.
 */
function derive(
  master: SrtpMaster,
  label: number,
  r: bigint,
  length: number,
): Uint8Array<ArrayBuffer> {
  const iv = new Uint8Array(16);
  iv.set(master.masterSalt);
  iv[7] = (iv[7] ?? 0) ^ label;
  xorBigEndian(iv, 13, r, 6);
  return aesCmKeystream(master.masterKey, iv, length);
}

/** Session keys for AES_CM_128_HMAC_SHA1_80. */
export interface SrtpSessionKeys {
  /** 16-byte AES-CM session key. */
  readonly cipherKey: Uint8Array<ArrayBuffer>;
  /** 20-byte HMAC-SHA1 session key. */
  readonly authKey: Uint8Array<ArrayBuffer>;
  /** 14-byte session salt. */
  readonly salt: Uint8Array<ArrayBuffer>;
}

/**
 * SRTP session keys by the RFC 3711 section 4.3 key derivation (labels 0, 1, 2). `kdr` is the
 * key derivation rate: 0 (derive once, what DTLS-SRTP and Pairwise use) or a power of two up
 * to 2^24, in which case `index` (the 48-bit packet index) selects the key epoch.
 *
 * Throws `CoreError("InvalidArgument")` for wrong key/salt lengths, an index outside 48 bits or
 * an invalid kdr.
 */
export function deriveSrtpSessionKeys(
  options: SrtpMaster & { index?: bigint; kdr?: number },
): SrtpSessionKeys {
  checkMaster(options);
  const index = options.index ?? 0n;
  const kdr = options.kdr ?? 0;
  if (index < 0n || index > MAX_SRTP_INDEX) {
    throw new CoreError("InvalidArgument", "SRTP index out of range");
  }
  if (!Number.isInteger(kdr) || kdr < 0 || kdr > MAX_KDR || (kdr & (kdr - 1)) !== 0) {
    throw new CoreError(
      "InvalidArgument",
      "key derivation rate must be 0 or a power of two <= 2^24",
    );
  }
  const r = kdr === 0 ? 0n : index / BigInt(kdr);
  return {
    cipherKey: derive(options, LABEL.rtpCipher, r, SRTP_MASTER_KEY_BYTES),
    authKey: derive(options, LABEL.rtpAuth, r, AUTH_KEY_BYTES),
    salt: derive(options, LABEL.rtpSalt, r, SRTP_MASTER_SALT_BYTES),
  };
}

/**
 * SRTCP session keys (RFC 3711 section 4.3.2, labels 3, 4, 5) with key derivation rate 0. A
 * non-zero rate is not offered: implementations disagree on where the label goes once the
 * 32-bit SRTCP index is mixed in, and Pairwise never uses one.
 *
 * Throws `CoreError("InvalidArgument")` for wrong key/salt lengths.
 */
export function deriveSrtcpSessionKeys(options: SrtpMaster): SrtpSessionKeys {
  checkMaster(options);
  return {
    cipherKey: derive(options, LABEL.rtcpCipher, 0n, SRTP_MASTER_KEY_BYTES),
    authKey: derive(options, LABEL.rtcpAuth, 0n, AUTH_KEY_BYTES),
    salt: derive(options, LABEL.rtcpSalt, 0n, SRTP_MASTER_SALT_BYTES),
  };
}
