import { CoreError } from "./errors.ts";

/**
 * Padded plaintexts are a whole number of blocks of this size (Signal's choice), so a
 * ciphertext's length reveals the plaintext length only to within 160 bytes.
 */
export const PADDING_BLOCK_BYTES = 160;

const MARKER = 0x80;

/**
 * Pads a plaintext before encryption: appends 0x80, then zeros up to the next multiple of
 * {@link PADDING_BLOCK_BYTES} (ISO/IEC 7816-4 style). Always adds at least one byte, so the
 * result is never empty. Does not throw.
 */
export function padPlaintext(plaintext: Uint8Array): Uint8Array<ArrayBuffer> {
  const length = Math.ceil((plaintext.length + 1) / PADDING_BLOCK_BYTES) * PADDING_BLOCK_BYTES;
  const out = new Uint8Array(length);
  out.set(plaintext);
  out[plaintext.length] = MARKER;
  return out;
}

/**
 * Strips the padding of {@link padPlaintext}. Strict: the length must be a non-zero multiple
 * of {@link PADDING_BLOCK_BYTES}, and the last block must hold the 0x80 marker followed only by
 * zeros, so each plaintext has exactly one padded form. Returns a copy.
 *
 * Throws `CoreError("MalformedInput")` when the padding is invalid.
 */
export function unpadPlaintext(padded: Uint8Array): Uint8Array<ArrayBuffer> {
  if (padded.length === 0 || padded.length % PADDING_BLOCK_BYTES !== 0) {
    throw new CoreError("MalformedInput", "padded plaintext has an invalid length");
  }
  const lastBlock = padded.length - PADDING_BLOCK_BYTES;
  let end = padded.length - 1;
  while (end >= lastBlock && padded[end] === 0) end--;
  if (end < lastBlock || padded[end] !== MARKER) {
    throw new CoreError("MalformedInput", "plaintext padding is invalid");
  }
  return padded.slice(0, end);
}
