import { SerialQueue, deferred } from "./async-primitives.ts";
import { TransportError, asTransportError } from "./errors.ts";
import { NOISE_MAX_MESSAGE_BYTES, NOISE_TAG_BYTES } from "./limits.ts";
import type { XxHandshakeResult } from "./noise-handshake.ts";
import type { SecureTransport, Transport, TransportClosed } from "./transport.ts";

/** Flag byte that starts every Noise transport plaintext. */
const FLAG_FINAL = 0x00;
const FLAG_MORE = 0x01;
const FLAG_BATCH = 0x02;

/** Bytes of the length prefix of each frame inside a batch. */
const BATCH_LENGTH_BYTES = 4;

/**
 * Application bytes per Noise transport message: 65535 (Noise's maximum message) minus the
 * 16-byte tag minus the 1-byte continuation flag = 65518.
 */
export const NOISE_CHUNK_BYTES = NOISE_MAX_MESSAGE_BYTES - NOISE_TAG_BYTES - 1;

/** What {@link createSecureTransport} needs besides the handshake result. */
export interface SecureTransportInit {
  /** The raw transport the handshake ran over. */
  readonly raw: Transport;
  /** The raw transport's iterator, already used for the handshake messages. */
  readonly rawFrames: AsyncIterator<Uint8Array>;
  /** The completed handshake. */
  readonly handshake: XxHandshakeResult;
  /** Largest application frame sent or accepted. */
  readonly maxFrameBytes: number;
}

/**
 * Encrypts application frames as Noise transport messages over a raw transport. A large app frame
 * becomes one or more Noise messages; small frames sent in the same turn of the event loop share
 * one (a batch), so a burst of small frames costs one encryption and one socket write:
 *
 * ```
 * raw frame  = AES-256-GCM(k, nonce = 0x00000000 ‖ u64be(n), ad = empty, plaintext) ‖ tag(16)
 * plaintext  = flag(1) ‖ chunk(0..65518)      flag 0x01: more chunks follow, 0x00: last chunk
 *            | 0x02 ‖ (u32be(len) ‖ frame)+   a batch of two or more whole frames
 * ```
 *
 * Every raw frame that fails authentication (tampered, truncated, reordered, replayed, from
 * another session) or breaks the layout closes the connection with `BadFrame`; a reassembled
 * frame over `maxFrameBytes` closes it with `FrameTooLarge`.
 */
class NoiseSecureTransport implements SecureTransport {
  readonly remoteStaticKey: Uint8Array;
  readonly handshakeHash: Uint8Array;
  readonly closed: Promise<TransportClosed>;

  readonly #init: SecureTransportInit;
  readonly #sends = new SerialQueue();
  readonly #reads = new SerialQueue();
  #failure: TransportError | undefined;
  #closing = false;
  #claimed = false;
  /** Small frames waiting for the end of this event-loop turn, and their batch size. */
  #batch: Uint8Array[] = [];
  #batchBytes = 1;
  #flushTimer: NodeJS.Immediate | undefined;
  /** Raw sends queued and not yet done (backpressure for callers). */
  #inFlight = 0;
  #lastRawSend: Promise<void> = Promise.resolve();
  /** Frames decoded from a batch; those from `#receivedAt` on are not yet handed to the reader. */
  #received: Uint8Array[] = [];
  #receivedAt = 0;
  /** Reads queued on `#reads` and not finished (while any is, a read must queue behind it). */
  #readsQueued = 0;

  constructor(init: SecureTransportInit) {
    this.#init = init;
    this.remoteStaticKey = init.handshake.remoteStaticKey;
    this.handshakeHash = init.handshake.handshakeHash;
    const closed = deferred<TransportClosed>();
    this.closed = closed.promise;
    void init.raw.closed.then((info) => {
      this.#closing = true;
      const error = this.#failure ?? info.error;
      closed.resolve(error ? { reason: info.reason, error } : { reason: info.reason });
    });
  }

  send(frame: Uint8Array): Promise<void> {
    if (this.#closing) return Promise.reject(new TransportError("Closed", "transport is closed"));
    if (frame.byteLength > this.#init.maxFrameBytes) {
      return Promise.reject(new TransportError("FrameTooLarge", "frame over the send limit"));
    }
    try {
      if (BATCH_LENGTH_BYTES + frame.byteLength <= NOISE_CHUNK_BYTES) {
        // A small frame waits for the end of this turn to share a Noise message with others.
        if (this.#batchBytes + BATCH_LENGTH_BYTES + frame.byteLength > NOISE_CHUNK_BYTES + 1) {
          this.#flush();
        }
        this.#batch.push(frame);
        this.#batchBytes += BATCH_LENGTH_BYTES + frame.byteLength;
        this.#flushTimer ??= setImmediate(() => {
          this.#flushTimer = undefined;
          this.#flushSafely();
        });
        // Queued: the caller waits only while earlier raw sends are still pending.
        return this.#inFlight > 0 ? this.#lastRawSend : Promise.resolve();
      }
      // Encrypt now, in call order, so nonces follow the order of the queued raw sends.
      this.#flush();
      return this.#queueRaw(this.#seal(frame));
    } catch (err) {
      return Promise.reject(asTransportError(err, "Closed", "cannot encrypt"));
    }
  }

  /** Seals the pending small frames (one plain message for one frame, else a batch) and queues them. */
  #flush(): void {
    if (this.#flushTimer) {
      clearImmediate(this.#flushTimer);
      this.#flushTimer = undefined;
    }
    const frames = this.#batch;
    if (frames.length === 0) return;
    const size = this.#batchBytes;
    this.#batch = [];
    this.#batchBytes = 1;
    const [only] = frames;
    if (frames.length === 1 && only) {
      void this.#queueRaw(this.#seal(only)).catch(() => undefined);
      return;
    }
    const plaintext = new Uint8Array(size);
    const view = new DataView(plaintext.buffer);
    plaintext[0] = FLAG_BATCH;
    let offset = 1;
    for (const f of frames) {
      view.setUint32(offset, f.byteLength);
      plaintext.set(f, offset + BATCH_LENGTH_BYTES);
      offset += BATCH_LENGTH_BYTES + f.byteLength;
    }
    const message = this.#init.handshake.send.encrypt(plaintext);
    void this.#queueRaw([message]).catch(() => undefined);
  }

  /** {@link #flush} from the timer: a failure to encrypt closes the connection. */
  #flushSafely(): void {
    try {
      this.#flush();
    } catch {
      this.#closing = true;
      void this.#init.raw.close("cannot encrypt").catch(() => undefined);
    }
  }

  #queueRaw(messages: Uint8Array[]): Promise<void> {
    this.#inFlight++;
    const sent = this.#sends
      .run(async () => {
        for (const message of messages) await this.#init.raw.send(message);
      })
      .finally(() => this.#inFlight--);
    this.#lastRawSend = sent.catch(() => undefined);
    return sent;
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.#claimed) {
      throw new TransportError("InvalidState", "a transport has only one consumer");
    }
    this.#claimed = true;
    return {
      next: () => {
        // A frame already decoded (the rest of a batch) is handed over at once: no queue turn.
        if (this.#readsQueued === 0 && this.#failure === undefined) {
          const frame = this.#takeReceived();
          if (frame) return Promise.resolve({ done: false, value: frame });
        }
        this.#readsQueued++;
        return this.#reads.run(async () => {
          try {
            return await this.#readFrame();
          } finally {
            this.#readsQueued--;
          }
        });
      },
      return: async () => {
        await this.close("consumer stopped");
        return { done: true, value: undefined };
      },
    };
  }

  async close(reason = "closed"): Promise<void> {
    // Frames already accepted by send() go out before the close.
    if (!this.#closing) this.#flushSafely();
    this.#closing = true;
    await this.#lastRawSend;
    await this.#init.raw.close(reason);
  }

  #seal(frame: Uint8Array): Uint8Array[] {
    const cipher = this.#init.handshake.send;
    const messages: Uint8Array[] = [];
    let offset = 0;
    do {
      const end = Math.min(offset + NOISE_CHUNK_BYTES, frame.byteLength);
      const plaintext = new Uint8Array(1 + end - offset);
      plaintext[0] = end < frame.byteLength ? FLAG_MORE : FLAG_FINAL;
      plaintext.set(frame.subarray(offset, end), 1);
      messages.push(cipher.encrypt(plaintext));
      offset = end;
    } while (offset < frame.byteLength);
    return messages;
  }

  /** The next frame decoded from a batch and not yet handed over, if any. */
  #takeReceived(): Uint8Array | undefined {
    if (this.#receivedAt >= this.#received.length) return undefined;
    const frame = this.#received[this.#receivedAt++];
    if (this.#receivedAt === this.#received.length) {
      this.#received = [];
      this.#receivedAt = 0;
    }
    return frame;
  }

  async #readFrame(): Promise<IteratorResult<Uint8Array>> {
    if (this.#failure) throw this.#failure;
    const queued = this.#takeReceived();
    if (queued) return { done: false, value: queued };
    const pieces: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const next = await this.#init.rawFrames.next();
      if (next.done === true) {
        if (pieces.length > 0) throw this.#fail("BadFrame", "connection ended inside a frame");
        return { done: true, value: undefined };
      }
      const message = next.value;
      if (message.byteLength > NOISE_MAX_MESSAGE_BYTES) {
        throw this.#fail("BadFrame", "Noise message over 65535 bytes");
      }
      let plaintext: Uint8Array;
      try {
        plaintext = this.#init.handshake.receive.decrypt(message);
      } catch {
        throw this.#fail("BadFrame", "frame failed authentication");
      }
      const flag = plaintext[0];
      if (flag === FLAG_BATCH && pieces.length === 0) {
        // #unbatch returns two or more frames: the first now, the rest from #received.
        this.#received = this.#unbatch(plaintext);
        this.#receivedAt = 0;
        const first = this.#takeReceived();
        if (first) return { done: false, value: first };
      }
      if (flag !== FLAG_FINAL && flag !== FLAG_MORE) {
        throw this.#fail("BadFrame", "bad continuation flag");
      }
      const piece = plaintext.subarray(1);
      total += piece.byteLength;
      if (total > this.#init.maxFrameBytes) {
        throw this.#fail("FrameTooLarge", "received frame over the limit");
      }
      pieces.push(piece);
      if (flag === FLAG_FINAL) {
        return { done: false, value: pieces.length === 1 ? piece : concat(pieces, total) };
      }
    }
  }

  /** Splits a batch plaintext into its frames; anything but two or more whole frames is `BadFrame`. */
  #unbatch(plaintext: Uint8Array): Uint8Array[] {
    const view = new DataView(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength);
    const frames: Uint8Array[] = [];
    let offset = 1;
    while (offset < plaintext.byteLength) {
      if (offset + BATCH_LENGTH_BYTES > plaintext.byteLength) {
        throw this.#fail("BadFrame", "truncated batch length");
      }
      const length = view.getUint32(offset);
      const start = offset + BATCH_LENGTH_BYTES;
      if (length > plaintext.byteLength - start) throw this.#fail("BadFrame", "truncated batch");
      if (length > this.#init.maxFrameBytes) {
        throw this.#fail("FrameTooLarge", "received frame over the limit");
      }
      frames.push(plaintext.subarray(start, start + length));
      offset = start + length;
    }
    if (frames.length < 2) throw this.#fail("BadFrame", "a batch holds two or more frames");
    return frames;
  }

  #fail(code: "BadFrame" | "FrameTooLarge", message: string): TransportError {
    this.#failure ??= new TransportError(code, message);
    this.#closing = true;
    void this.#init.raw.close(code).catch(() => undefined);
    return this.#failure;
  }
}

function concat(pieces: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.byteLength;
  }
  return out;
}

/** Wraps a raw transport whose Noise handshake completed into a {@link SecureTransport}. */
export function createSecureTransport(init: SecureTransportInit): SecureTransport {
  return new NoiseSecureTransport(init);
}
