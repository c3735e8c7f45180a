import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";
import { TransportError } from "./errors.ts";
import { NOISE_KEY_BYTES } from "./limits.ts";

/** An X25519 key pair as raw 32-byte strings (the Noise `DH` functions of Curve25519). */
export interface NoiseKeyPair {
  /** The raw 32-byte private scalar (RFC 7748 form). Keep it secret. */
  readonly privateKey: Uint8Array;
  /** The raw 32-byte public key: this is what a peer pins. */
  readonly publicKey: Uint8Array;
}

// DER wrappers that let node:crypto import raw X25519 keys (RFC 8410 OIDs 1.3.101.110).
const PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");

function checkKey(name: string, key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.byteLength !== NOISE_KEY_BYTES) {
    throw new TransportError("InvalidArgument", `${name} must be ${NOISE_KEY_BYTES} bytes`);
  }
}

// Importing a private key from DER is the costliest step of a handshake; the same private key
// array (a static key, or an ephemeral key used in two DH operations) maps to one KeyObject.
// Keyed weakly by the array itself, so nothing outlives the key it was made from.
const privateKeyObjects = new WeakMap<Uint8Array, KeyObject>();

function privateKeyObject(privateKey: Uint8Array): KeyObject {
  let key = privateKeyObjects.get(privateKey);
  if (!key) {
    key = createPrivateKey({
      key: Buffer.concat([PKCS8_PREFIX, privateKey]),
      format: "der",
      type: "pkcs8",
    });
    privateKeyObjects.set(privateKey, key);
  }
  return key;
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  return createPublicKey({
    key: Buffer.concat([SPKI_PREFIX, publicKey]),
    format: "der",
    type: "spki",
  });
}

function rawPublicKey(key: KeyObject): Uint8Array {
  const spki = key.export({ format: "der", type: "spki" });
  return new Uint8Array(spki.subarray(spki.byteLength - NOISE_KEY_BYTES));
}

/**
 * A fresh random X25519 key pair for Noise: a device's or server's static key, stored by the
 * caller. Throws only if node:crypto cannot generate keys.
 */
export function generateNoiseKeyPair(): NoiseKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  const pkcs8 = privateKey.export({ format: "der", type: "pkcs8" });
  return {
    privateKey: new Uint8Array(pkcs8.subarray(pkcs8.byteLength - NOISE_KEY_BYTES)),
    publicKey: rawPublicKey(publicKey),
  };
}

/**
 * The key pair of a stored raw 32-byte X25519 private key (the public key is derived).
 * Throws `TransportError("InvalidArgument")` unless the key is 32 bytes.
 */
export function noiseKeyPairFromPrivateKey(privateKey: Uint8Array): NoiseKeyPair {
  checkKey("privateKey", privateKey);
  return {
    privateKey: new Uint8Array(privateKey),
    publicKey: rawPublicKey(createPublicKey(privateKeyObject(privateKey))),
  };
}

/** Throws `TransportError("InvalidArgument")` unless `pair` holds two 32-byte keys. */
export function checkNoiseKeyPair(pair: NoiseKeyPair): void {
  checkKey("staticKeyPair.privateKey", pair.privateKey);
  checkKey("staticKeyPair.publicKey", pair.publicKey);
}

/**
 * X25519(privateKey, publicKey). Throws (a plain Error from node:crypto) for a public key whose
 * shared secret is all zeros (a low-order point); callers map that to a handshake failure.
 */
export function x25519(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  const shared = diffieHellman({
    privateKey: privateKeyObject(privateKey),
    publicKey: publicKeyObject(publicKey),
  });
  return new Uint8Array(shared.buffer, shared.byteOffset, shared.byteLength);
}
