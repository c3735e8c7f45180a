import { timingSafeEqual } from "node:crypto";
import { CoreError } from "./errors.ts";

/** Concatenates byte arrays into one new `Uint8Array`. */
export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Constant-time equality for secrets (MACs, keys); false on different lengths. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Copies into a fresh `Uint8Array<ArrayBuffer>` (libsignal wants exactly that type). */
export function toBytes(data: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(data.length);
  out.set(data);
  return out;
}

/**
 * The same bytes typed as `Uint8Array<ArrayBuffer>` without copying when they already sit on a
 * plain ArrayBuffer (the hot path: stored records handed straight to libsignal, which copies
 * them into native memory itself).
 */
export function asBytes(data: Uint8Array): Uint8Array<ArrayBuffer> {
  return data.buffer instanceof ArrayBuffer ? (data as Uint8Array<ArrayBuffer>) : toBytes(data);
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** base64url without padding. */
export function toBase64Url(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64url");
}

/**
 * Strict base64url decode: only the URL-safe alphabet, no padding, canonical (re-encodes to the
 * same text), optionally of an exact decoded length. Throws `CoreError("MalformedInput")`.
 */
export function fromBase64Url(
  text: string,
  what: string,
  exactLength?: number,
): Uint8Array<ArrayBuffer> {
  if (!BASE64URL.test(text) || text.length % 4 === 1) {
    throw new CoreError("MalformedInput", `${what} is not base64url`);
  }
  const decoded = toBytes(Buffer.from(text, "base64url"));
  if (toBase64Url(decoded) !== text)
    throw new CoreError("MalformedInput", `${what} is not canonical base64url`);
  if (exactLength !== undefined && decoded.length !== exactLength) {
    throw new CoreError("MalformedInput", `${what} must be ${exactLength} bytes`);
  }
  return decoded;
}

/** Lower-case hex. */
export function toHex(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("hex");
}

/** Strict hex decode (even length, hex digits only). Throws `CoreError("MalformedInput")`. */
export function fromHex(text: string, what: string): Uint8Array<ArrayBuffer> {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(text))
    throw new CoreError("MalformedInput", `${what} is not hex`);
  return toBytes(Buffer.from(text, "hex"));
}

const encoder = new TextEncoder();
/** UTF-8 encode. */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text);
}
