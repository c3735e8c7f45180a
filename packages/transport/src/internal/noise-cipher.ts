import { createCipheriv, createDecipheriv } from "node:crypto";
import { TransportError } from "./errors.ts";
import { NOISE_KEY_BYTES, NOISE_TAG_BYTES } from "./limits.ts";

const EMPTY = new Uint8Array(0);

/**
 * A Noise CipherState for AESGCM (Noise spec rev 34, sections 5.1 and 12.4): AES-256-GCM with a
 * 96-bit nonce of 32 zero bits followed by the 64-bit big-endian counter `n`, a 16-byte tag
 * appended to the ciphertext, and `n` incremented after every successful operation. Without a
 * key, encryption and decryption return the input unchanged (as the spec requires during the
 * first handshake message).
 */
export class CipherState {
  #key: Buffer | undefined;
  #n = 0;

  constructor(key?: Uint8Array) {
    if (key) this.initializeKey(key);
  }

  /** Sets the key and resets the nonce (InitializeKey). */
  initializeKey(key: Uint8Array): void {
    if (key.byteLength !== NOISE_KEY_BYTES) throw new Error("cipher key must be 32 bytes");
    this.#key = Buffer.from(key);
    this.#n = 0;
  }

  /** True once a key is set. */
  hasKey(): boolean {
    return this.#key !== undefined;
  }

  /** The nonce the next operation uses. */
  get nonce(): number {
    return this.#n;
  }

  /** EncryptWithAd: `ciphertext ‖ tag`, or the plaintext itself without a key. */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    if (!this.#key) return plaintext;
    const cipher = createCipheriv("aes-256-gcm", this.#key, this.#nextNonce(), {
      authTagLength: NOISE_TAG_BYTES,
    });
    cipher.setAAD(ad);
    const body = cipher.update(plaintext);
    const rest = cipher.final(); // empty for GCM, which is a stream mode
    const out = Buffer.concat(
      rest.length === 0 ? [body, cipher.getAuthTag()] : [body, rest, cipher.getAuthTag()],
      body.length + rest.length + NOISE_TAG_BYTES,
    );
    this.#n += 1;
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  }

  /**
   * DecryptWithAd. Throws `TransportError("BadFrame")` when the ciphertext is shorter than a
   * tag or does not authenticate; the nonce is then not advanced.
   */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    if (!this.#key) return ciphertext;
    if (ciphertext.byteLength < NOISE_TAG_BYTES) {
      throw new TransportError("BadFrame", "ciphertext shorter than its tag");
    }
    const split = ciphertext.byteLength - NOISE_TAG_BYTES;
    const decipher = createDecipheriv("aes-256-gcm", this.#key, this.#nextNonce(), {
      authTagLength: NOISE_TAG_BYTES,
    });
    decipher.setAAD(ad);
    decipher.setAuthTag(ciphertext.subarray(split));
    let out: Buffer;
    try {
      const body = decipher.update(ciphertext.subarray(0, split));
      const rest = decipher.final(); // checks the tag; empty for GCM
      out = rest.length === 0 ? body : Buffer.concat([body, rest]);
    } catch (err) {
      throw new TransportError("BadFrame", "ciphertext failed authentication", { cause: err });
    }
    this.#n += 1;
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  }

  /** Encrypts with empty associated data (transport messages). */
  encrypt(plaintext: Uint8Array): Uint8Array {
    return this.encryptWithAd(EMPTY, plaintext);
  }

  /** Decrypts with empty associated data (transport messages). */
  decrypt(ciphertext: Uint8Array): Uint8Array {
    return this.decryptWithAd(EMPTY, ciphertext);
  }

  #nextNonce(): Buffer {
    // 2^64 - 1 is reserved by the spec; a safe-integer counter stops far below it.
    if (this.#n >= Number.MAX_SAFE_INTEGER) {
      throw new TransportError("Closed", "nonce space exhausted; reconnect");
    }
    const nonce = Buffer.alloc(12);
    nonce.writeUInt32BE(Math.floor(this.#n / 2 ** 32), 4);
    nonce.writeUInt32BE(this.#n >>> 0, 8);
    return nonce;
  }
}
