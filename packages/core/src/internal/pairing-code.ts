import { pbkdf2, randomBytes } from "node:crypto";
import { toBytes, utf8 } from "./bytes.ts";
import { CoreError } from "./errors.ts";

/**
 * The 32 pairing-code symbols: digits 1-9 and the letters without I, O and U (no 0 either), so
 * each symbol carries exactly 5 bits and none reads as another.
 */
export const PAIRING_CODE_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTVWXYZ";

/** Symbols in a pairing code: 8 × 5 bits = 40 bits, made from exactly 5 random bytes. */
export const PAIRING_CODE_LENGTH = 8;

/** PBKDF2-SHA256 iterations that stretch a pairing code (2^17). */
export const PAIRING_CODE_PBKDF2_ITERATIONS = 131_072;

/** Size of the key {@link stretchPairingCode} derives. */
export const PAIRING_CODE_KEY_BYTES = 32;

const RANDOM_BYTES = 5;
const MAX_INPUT_CHARS = 64;
const MIN_SALT_BYTES = 16;
const MAX_SALT_BYTES = 64;
// PAIRING_CODE_ALPHABET in either case.
const SYMBOLS = /^[1-9A-HJ-NP-TV-Za-hj-np-tv-z]+$/;

/**
 * Creates a random 8-symbol pairing code in canonical form (upper case, no separators). The 40
 * bits of 5 random bytes are read big-endian, 5 bits per symbol, so there is no modulo bias.
 *
 * @throws CoreError "InvalidArgument" when an injected `random` returns the wrong length.
 */
export function createPairingCode(
  options: { random?: (length: number) => Uint8Array } = {},
): string {
  const bytes =
    options.random === undefined ? randomBytes(RANDOM_BYTES) : options.random(RANDOM_BYTES);
  if (bytes.length !== RANDOM_BYTES)
    throw new CoreError("InvalidArgument", "random source returned the wrong length");
  let bits = 0n;
  for (const b of bytes) bits = (bits << 8n) | BigInt(b);
  let code = "";
  for (let i = PAIRING_CODE_LENGTH - 1; i >= 0; i--) {
    code += PAIRING_CODE_ALPHABET.charAt(Number((bits >> BigInt(i * 5)) & 31n));
  }
  return code;
}

/**
 * Turns what a user typed into the canonical pairing code: case-insensitive, spaces and dashes
 * ignored, exactly 8 symbols of {@link PAIRING_CODE_ALPHABET}. No look-alike is mapped (0, O, I
 * and U are refused, not corrected).
 *
 * @throws CoreError "MalformedInput" for anything else.
 */
export function normalizePairingCode(input: string): string {
  if (typeof input !== "string" || input.length > MAX_INPUT_CHARS) {
    throw new CoreError("MalformedInput", "pairing code is malformed");
  }
  // Checked in ASCII before upper-casing: Unicode case mapping turns e.g. "ſ" into "S".
  const stripped = input.replace(/[ -]/g, "");
  if (stripped.length !== PAIRING_CODE_LENGTH || !SYMBOLS.test(stripped)) {
    throw new CoreError("MalformedInput", "pairing code is malformed");
  }
  return stripped.toUpperCase();
}

/**
 * Stretches a pairing code into a 32-byte key: PBKDF2-SHA256 over the UTF-8 of the canonical
 * code, {@link PAIRING_CODE_PBKDF2_ITERATIONS} iterations, with a 16..64-byte salt both sides
 * know (e.g. chosen by the server per pairing attempt).
 *
 * @throws CoreError "MalformedInput" when the code is malformed (see
 *   {@link normalizePairingCode}), "InvalidArgument" when the salt is not 16..64 bytes.
 */
export async function stretchPairingCode(
  code: string,
  salt: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  const canonical = normalizePairingCode(code);
  if (salt.length < MIN_SALT_BYTES || salt.length > MAX_SALT_BYTES) {
    throw new CoreError("InvalidArgument", "pairing salt must be 16..64 bytes");
  }
  return new Promise((resolve, reject) => {
    pbkdf2(
      utf8(canonical),
      salt,
      PAIRING_CODE_PBKDF2_ITERATIONS,
      PAIRING_CODE_KEY_BYTES,
      "sha256",
      (err, key) => {
        if (err)
          reject(
            new CoreError("InvalidArgument", "pairing code could not be stretched", { cause: err }),
          );
        else resolve(toBytes(key));
      },
    );
  });
}
