import { TransportError } from "./errors.ts";
import type { CipherState } from "./noise-cipher.ts";
import { generateNoiseKeyPair, x25519, type NoiseKeyPair } from "./noise-keys.ts";
import { SymmetricState } from "./noise-symmetric.ts";
import { NOISE_KEY_BYTES, NOISE_MAX_MESSAGE_BYTES, NOISE_TAG_BYTES } from "./limits.ts";

/** The one Noise protocol this package speaks. */
export const NOISE_PROTOCOL_NAME = "Noise_XX_25519_AESGCM_SHA256";

/** Options of {@link XxHandshake}. */
export interface XxHandshakeOptions {
  /** True for the side that sends the first message (the client). */
  readonly initiator: boolean;
  /** This side's static key pair. */
  readonly staticKeyPair: NoiseKeyPair;
  /** Bytes both sides must agree on; mixed into `h` before the first message (default empty). */
  readonly prologue?: Uint8Array;
  /** A fixed ephemeral key pair. Only for known-answer tests: never reuse an ephemeral key. */
  readonly ephemeralKeyPair?: NoiseKeyPair;
}

/** What a completed handshake yields. */
export interface XxHandshakeResult {
  /** CipherState for the messages this side sends. */
  readonly send: CipherState;
  /** CipherState for the messages this side receives. */
  readonly receive: CipherState;
  /** The peer's static public key, authenticated by the handshake. */
  readonly remoteStaticKey: Uint8Array;
  /** The final handshake hash `h`. */
  readonly handshakeHash: Uint8Array;
}

const ENCRYPTED_KEY_BYTES = NOISE_KEY_BYTES + NOISE_TAG_BYTES;

/**
 * The Noise XX pattern as a pure state machine (no I/O):
 *
 * ```
 * -> e
 * <- e, ee, s, es
 * -> s, se
 * ```
 *
 * Call `writeMessage` / `readMessage` alternately in pattern order; after the third message
 * `result()` gives the transport CipherStates. Any failure throws `TransportError` with code
 * `"HandshakeFailed"` (the object is then unusable).
 */
export class XxHandshake {
  readonly #initiator: boolean;
  readonly #s: NoiseKeyPair;
  readonly #e: NoiseKeyPair;
  readonly #symmetric = new SymmetricState(NOISE_PROTOCOL_NAME);
  #re: Uint8Array | undefined;
  #rs: Uint8Array | undefined;
  #step = 0;
  #failed = false;

  constructor(options: XxHandshakeOptions) {
    this.#initiator = options.initiator;
    this.#s = options.staticKeyPair;
    this.#e = options.ephemeralKeyPair ?? generateNoiseKeyPair();
    this.#symmetric.mixHash(options.prologue ?? new Uint8Array(0));
  }

  /** True once all three messages went through. */
  get isComplete(): boolean {
    return this.#step === 3;
  }

  /** The peer's static key once received (message 2 for the initiator, 3 for the responder). */
  get remoteStaticKey(): Uint8Array | undefined {
    return this.#rs ? new Uint8Array(this.#rs) : undefined;
  }

  /** True when it is this side's turn to write. */
  get isMyTurn(): boolean {
    return this.#step < 3 && (this.#step % 2 === 0) === this.#initiator;
  }

  /** Writes the next handshake message carrying `payload` (encrypted from message 2 on). */
  writeMessage(payload: Uint8Array = new Uint8Array(0)): Uint8Array {
    return this.#guard(true, () => {
      const ss = this.#symmetric;
      const parts: Uint8Array[] = [];
      if (this.#step === 0) {
        parts.push(this.#e.publicKey);
        ss.mixHash(this.#e.publicKey);
      } else if (this.#step === 1) {
        parts.push(this.#e.publicKey);
        ss.mixHash(this.#e.publicKey);
        ss.mixKey(x25519(this.#e.privateKey, this.#remote(this.#re))); // ee
        parts.push(ss.encryptAndHash(this.#s.publicKey)); // s
        ss.mixKey(x25519(this.#s.privateKey, this.#remote(this.#re))); // es
      } else {
        parts.push(ss.encryptAndHash(this.#s.publicKey)); // s
        ss.mixKey(x25519(this.#s.privateKey, this.#remote(this.#re))); // se
      }
      parts.push(ss.encryptAndHash(payload));
      const message = Buffer.concat(parts);
      if (message.byteLength > NOISE_MAX_MESSAGE_BYTES) {
        throw new TransportError("InvalidArgument", "handshake payload too large");
      }
      return new Uint8Array(message.buffer, message.byteOffset, message.byteLength);
    });
  }

  /** Reads the peer's next handshake message and returns its payload. */
  readMessage(message: Uint8Array): Uint8Array {
    return this.#guard(false, () => {
      if (message.byteLength > NOISE_MAX_MESSAGE_BYTES) throw malformed();
      const ss = this.#symmetric;
      let rest = message;
      const take = (n: number): Uint8Array => {
        if (rest.byteLength < n) throw malformed();
        const head = rest.subarray(0, n);
        rest = rest.subarray(n);
        return head;
      };
      if (this.#step === 0) {
        this.#re = new Uint8Array(take(NOISE_KEY_BYTES));
        ss.mixHash(this.#re);
      } else if (this.#step === 1) {
        this.#re = new Uint8Array(take(NOISE_KEY_BYTES));
        ss.mixHash(this.#re);
        ss.mixKey(x25519(this.#e.privateKey, this.#re)); // ee
        this.#rs = ss.decryptAndHash(take(ENCRYPTED_KEY_BYTES)); // s
        ss.mixKey(x25519(this.#e.privateKey, this.#rs)); // es
      } else {
        this.#rs = ss.decryptAndHash(take(ENCRYPTED_KEY_BYTES)); // s
        ss.mixKey(x25519(this.#e.privateKey, this.#rs)); // se
      }
      return ss.decryptAndHash(rest);
    });
  }

  /** The transport CipherStates and peer identity; throws unless the handshake is complete. */
  result(): XxHandshakeResult {
    if (!this.isComplete || !this.#rs) {
      throw new TransportError("InvalidState", "handshake not complete");
    }
    const [c1, c2] = this.#symmetric.split();
    return {
      send: this.#initiator ? c1 : c2,
      receive: this.#initiator ? c2 : c1,
      remoteStaticKey: new Uint8Array(this.#rs),
      handshakeHash: this.#symmetric.handshakeHash,
    };
  }

  #remote(key: Uint8Array | undefined): Uint8Array {
    if (!key) throw new TransportError("InvalidState", "remote ephemeral key missing");
    return key;
  }

  #guard<T>(writing: boolean, step: () => T): T {
    if (this.#failed || this.isComplete || this.isMyTurn !== writing) {
      throw new TransportError("InvalidState", "handshake message out of order");
    }
    try {
      const out = step();
      this.#step += 1;
      return out;
    } catch (err) {
      this.#failed = true;
      if (TransportError.is(err, "InvalidArgument")) throw err;
      throw new TransportError("HandshakeFailed", "invalid handshake message", { cause: err });
    }
  }
}

function malformed(): TransportError {
  return new TransportError("HandshakeFailed", "malformed handshake message");
}
