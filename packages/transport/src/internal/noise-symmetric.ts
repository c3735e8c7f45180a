import { createHash, createHmac } from "node:crypto";
import { CipherState } from "./noise-cipher.ts";

const HASH_LEN = 32;

function sha256(...parts: Uint8Array[]): Uint8Array {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return new Uint8Array(hash.digest());
}

function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const mac = createHmac("sha256", key);
  for (const part of parts) mac.update(part);
  return new Uint8Array(mac.digest());
}

/**
 * Noise's HKDF (spec rev 34, section 4.3) with HMAC-SHA256, returning two outputs:
 * `temp = HMAC(ck, ikm)`, `out1 = HMAC(temp, 0x01)`, `out2 = HMAC(temp, out1 ‖ 0x02)`.
 */
export function noiseHkdf(chainingKey: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array] {
  const temp = hmacSha256(chainingKey, ikm);
  const out1 = hmacSha256(temp, Uint8Array.of(1));
  const out2 = hmacSha256(temp, out1, Uint8Array.of(2));
  return [out1, out2];
}

/**
 * A Noise SymmetricState (spec rev 34, section 5.2) for SHA256: the chaining key `ck`, the
 * handshake hash `h` and the handshake CipherState.
 */
export class SymmetricState {
  #ck: Uint8Array;
  #h: Uint8Array;
  readonly #cipher = new CipherState();

  /** InitializeSymmetric(protocolName). */
  constructor(protocolName: string) {
    const name = new TextEncoder().encode(protocolName);
    if (name.byteLength <= HASH_LEN) {
      this.#h = new Uint8Array(HASH_LEN);
      this.#h.set(name);
    } else {
      this.#h = sha256(name);
    }
    this.#ck = this.#h;
  }

  /** The handshake hash `h` (a copy). */
  get handshakeHash(): Uint8Array {
    return new Uint8Array(this.#h);
  }

  /** MixHash(data): `h = SHA256(h ‖ data)`. */
  mixHash(data: Uint8Array): void {
    this.#h = sha256(this.#h, data);
  }

  /** MixKey(ikm): `ck, k = HKDF(ck, ikm)`; sets the handshake cipher's key. */
  mixKey(ikm: Uint8Array): void {
    const [ck, key] = noiseHkdf(this.#ck, ikm);
    this.#ck = ck;
    this.#cipher.initializeKey(key);
  }

  /** EncryptAndHash(plaintext). */
  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.#cipher.encryptWithAd(this.#h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  /** DecryptAndHash(ciphertext); throws `TransportError("BadFrame")` if it does not verify. */
  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const plaintext = this.#cipher.decryptWithAd(this.#h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext;
  }

  /** Split(): the initiator-to-responder and responder-to-initiator CipherStates. */
  split(): [CipherState, CipherState] {
    const [k1, k2] = noiseHkdf(this.#ck, new Uint8Array(0));
    return [new CipherState(k1), new CipherState(k2)];
  }
}
