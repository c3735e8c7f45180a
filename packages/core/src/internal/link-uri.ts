import { createHmac, randomBytes } from "node:crypto";
import { PrivateKey, PublicKey } from "@signalapp/libsignal-client";
import { bytesEqual, fromBase64Url, toBase64Url, toBytes } from "./bytes.ts";
import { CoreError, type CoreErrorCode } from "./errors.ts";

/** Everything before the query of a link URI; matched exactly (scheme and host are case-sensitive). */
export const LINK_URI_PREFIX = "pairwise://link?";

/** The only link URI version (`v=1`). */
export const LINK_URI_VERSION = 1;

/** Longest link URI {@link decodeLinkUri} looks at; a well-formed one is under 240 characters. */
export const LINK_URI_MAX_LENGTH = 512;

/** Size of the link secret and of the HMAC that proves the primary saw it. */
export const LINK_SECRET_BYTES = 32;

/** Raw X25519 public key size (the `pub` parameter carries no 0x05 type byte). */
export const LINK_EPHEMERAL_PUBLIC_BYTES = 32;

/** Serialized libsignal identity public key size (0x05 type byte followed by 32 bytes). */
export const IDENTITY_PUBLIC_KEY_BYTES = 33;

const REF = /^[A-Za-z0-9_-]{16,64}$/;
const VALUE = /^[A-Za-z0-9_-]+$/;
const PARAMS = ["v", "ref", "pub", "id", "secret"] as const;
type Param = (typeof PARAMS)[number];

/** What a link URI (and the QR code that renders it) tells the primary about a waiting companion. */
export interface LinkUri {
  /** Provisioning ref chosen by the server: 16..64 characters of `[A-Za-z0-9_-]`, opaque. */
  readonly ref: string;
  /** The companion's ephemeral X25519 public key, 32 raw bytes (no 0x05 type byte). */
  readonly ephemeralPublic: Uint8Array;
  /** The companion's device identity public key, 33 bytes as libsignal serializes it. */
  readonly identityPublic: Uint8Array;
  /** The 32-byte link secret the primary proves it saw with {@link computeLinkHmac}. */
  readonly secret: Uint8Array;
}

/** The companion's one-time X25519 key pair for a link URI, both halves as 32 raw bytes. */
export interface EphemeralLinkKeys {
  /** 32-byte X25519 private key (libsignal `PrivateKey.serialize()`); keep it until linked. */
  readonly privateKey: Uint8Array<ArrayBuffer>;
  /** 32-byte raw X25519 public key, the `pub` parameter of the link URI. */
  readonly publicKey: Uint8Array<ArrayBuffer>;
}

/** Source of random bytes; tests inject a deterministic one. */
type RandomSource = (length: number) => Uint8Array;

function randomOf(random: RandomSource | undefined, length: number): Uint8Array<ArrayBuffer> {
  const bytes = random === undefined ? randomBytes(length) : random(length);
  if (bytes.length !== length)
    throw new CoreError("InvalidArgument", "random source returned the wrong length");
  return toBytes(bytes);
}

/** True when `bytes` is a 33-byte libsignal identity public key that deserializes. */
function isIdentityPublicKey(bytes: Uint8Array): boolean {
  if (bytes.length !== IDENTITY_PUBLIC_KEY_BYTES || bytes[0] !== 0x05) return false;
  try {
    PublicKey.deserialize(toBytes(bytes));
    return true;
  } catch {
    return false;
  }
}

function checkFields(fields: LinkUri, code: CoreErrorCode): void {
  if (!REF.test(fields.ref))
    throw new CoreError(code, "link ref must be 16..64 base64url characters");
  if (fields.ephemeralPublic.length !== LINK_EPHEMERAL_PUBLIC_BYTES) {
    throw new CoreError(code, "link ephemeral key must be 32 bytes");
  }
  if (fields.secret.length !== LINK_SECRET_BYTES)
    throw new CoreError(code, "link secret must be 32 bytes");
  if (!isIdentityPublicKey(fields.identityPublic)) {
    throw new CoreError(
      code === "MalformedInput" ? code : "InvalidKey",
      "link identity key is not a public key",
    );
  }
}

/**
 * Builds the link URI a companion shows as a QR code:
 * `pairwise://link?v=1&ref=…&pub=…&id=…&secret=…`, binary values base64url without padding.
 *
 * @throws CoreError "InvalidArgument" when the ref or a length is wrong, "InvalidKey" when
 *   `identityPublic` is not a serialized libsignal public key.
 */
export function encodeLinkUri(fields: LinkUri): string {
  checkFields(fields, "InvalidArgument");
  return (
    `${LINK_URI_PREFIX}v=${LINK_URI_VERSION}&ref=${fields.ref}` +
    `&pub=${toBase64Url(fields.ephemeralPublic)}` +
    `&id=${toBase64Url(fields.identityPublic)}` +
    `&secret=${toBase64Url(fields.secret)}`
  );
}

/**
 * Parses a scanned link URI strictly: exact `pairwise://link?` prefix, `v=1`, each of `v`, `ref`,
 * `pub`, `id`, `secret` exactly once (any order), no other parameters, no percent-escapes,
 * canonical base64url of the exact sizes, and an identity key libsignal accepts.
 *
 * @throws CoreError "InputTooLarge" past {@link LINK_URI_MAX_LENGTH} characters,
 *   "MalformedInput" for anything else that is not a valid link URI.
 */
export function decodeLinkUri(text: string): LinkUri & {
  readonly ephemeralPublic: Uint8Array<ArrayBuffer>;
  readonly identityPublic: Uint8Array<ArrayBuffer>;
  readonly secret: Uint8Array<ArrayBuffer>;
} {
  if (typeof text !== "string") throw new CoreError("MalformedInput", "link URI is not a string");
  if (text.length > LINK_URI_MAX_LENGTH)
    throw new CoreError("InputTooLarge", "link URI is too long");
  if (!text.startsWith(LINK_URI_PREFIX))
    throw new CoreError("MalformedInput", "not a Pairwise link URI");

  const params = new Map<Param, string>();
  for (const part of text.slice(LINK_URI_PREFIX.length).split("&")) {
    const eq = part.indexOf("=");
    const name = PARAMS.find((p) => p === part.slice(0, eq));
    const value = part.slice(eq + 1);
    if (eq <= 0 || name === undefined)
      throw new CoreError("MalformedInput", "link URI has an unknown parameter");
    if (params.has(name)) throw new CoreError("MalformedInput", "link URI repeats a parameter");
    if (!VALUE.test(value))
      throw new CoreError("MalformedInput", "link URI parameter value is malformed");
    params.set(name, value);
  }
  const get = (name: Param): string => {
    const value = params.get(name);
    if (value === undefined) throw new CoreError("MalformedInput", "link URI lacks a parameter");
    return value;
  };

  if (get("v") !== String(LINK_URI_VERSION))
    throw new CoreError("MalformedInput", "unsupported link URI version");
  const fields = {
    ref: get("ref"),
    ephemeralPublic: fromBase64Url(get("pub"), "link ephemeral key", LINK_EPHEMERAL_PUBLIC_BYTES),
    identityPublic: fromBase64Url(get("id"), "link identity key", IDENTITY_PUBLIC_KEY_BYTES),
    secret: fromBase64Url(get("secret"), "link secret", LINK_SECRET_BYTES),
  };
  checkFields(fields, "MalformedInput");
  return fields;
}

/**
 * Creates a fresh 32-byte link secret for a link URI.
 *
 * @throws CoreError "InvalidArgument" when an injected `random` returns the wrong length.
 */
export function createLinkSecret(options: { random?: RandomSource } = {}): Uint8Array<ArrayBuffer> {
  return randomOf(options.random, LINK_SECRET_BYTES);
}

/**
 * Creates the companion's one-time X25519 key pair for a link URI (libsignal keys; the public
 * half is returned raw, without libsignal's 0x05 type byte). With an injected `random`, its 32
 * bytes become the private key (clamped by X25519).
 *
 * @throws CoreError "InvalidArgument" when an injected `random` returns the wrong length.
 */
export function createEphemeralLinkKeys(
  options: { random?: RandomSource } = {},
): EphemeralLinkKeys {
  const privateKey =
    options.random === undefined
      ? PrivateKey.generate()
      : PrivateKey.deserialize(randomOf(options.random, 32));
  return {
    privateKey: privateKey.serialize(),
    publicKey: toBytes(privateKey.getPublicKey().serialize().subarray(1)),
  };
}

function checkSecret(secret: Uint8Array): void {
  if (secret.length !== LINK_SECRET_BYTES)
    throw new CoreError("InvalidArgument", "link secret must be 32 bytes");
}

/**
 * The primary's proof that it saw the companion's link URI:
 * `HMAC-SHA256(link secret, DeviceIdentity bytes)`, 32 bytes.
 *
 * @throws CoreError "InvalidArgument" when `secret` is not 32 bytes.
 */
export function computeLinkHmac(secret: Uint8Array, details: Uint8Array): Uint8Array<ArrayBuffer> {
  checkSecret(secret);
  return toBytes(createHmac("sha256", secret).update(details).digest());
}

/**
 * Checks, in constant time, the link HMAC that came with a signed device identity; false for a
 * wrong MAC of any length.
 *
 * @throws CoreError "InvalidArgument" when `secret` is not 32 bytes.
 */
export function verifyLinkHmac(secret: Uint8Array, details: Uint8Array, mac: Uint8Array): boolean {
  return bytesEqual(computeLinkHmac(secret, details), mac);
}
