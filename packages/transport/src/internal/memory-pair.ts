import { ChangeSignal, SerialQueue, deferred } from "./async-primitives.ts";
import { TransportError } from "./errors.ts";
import { BUFFERED_FRAMES, FrameInbox } from "./frame-inbox.ts";
import { DEFAULT_MAX_BUFFERED_FRAMES, DEFAULT_MAX_FRAME_BYTES, checkInteger } from "./limits.ts";
import type { Transport, TransportClosed } from "./transport.ts";

/** Options of {@link createMemoryPair}. */
export interface MemoryPairOptions {
  /**
   * Frames one side buffers for its consumer; a `send` from the other side waits while the
   * buffer is full (default 64). This is the whole in-flight capacity of one direction.
   */
  readonly maxBufferedFrames?: number;
  /** Largest frame `send` accepts (default 4 MiB); larger ones reject with `FrameTooLarge`. */
  readonly maxFrameBytes?: number;
}

class MemoryEnd implements Transport {
  readonly #inbox: FrameInbox;
  readonly #space = new ChangeSignal();
  readonly #sends = new SerialQueue();
  readonly #closed = deferred<TransportClosed>();
  readonly #maxFrameBytes: number;
  #peer: MemoryEnd | undefined;
  #isClosed = false;

  readonly closed: Promise<TransportClosed> = this.#closed.promise;

  constructor(maxBufferedFrames: number, maxFrameBytes: number) {
    this.#maxFrameBytes = maxFrameBytes;
    this.#inbox = new FrameInbox({
      highWaterMark: maxBufferedFrames,
      onSpace: () => {
        this.#space.notify();
      },
      onReturn: () => void this.close("consumer stopped"),
    });
  }

  [BUFFERED_FRAMES](): number {
    return this.#inbox.size;
  }

  connect(peer: MemoryEnd): void {
    this.#peer = peer;
  }

  send(frame: Uint8Array): Promise<void> {
    if (this.#isClosed) return Promise.reject(closedError());
    if (frame.byteLength > this.#maxFrameBytes) {
      return Promise.reject(new TransportError("FrameTooLarge", "frame over the send limit"));
    }
    // Copy now: the caller may reuse its buffer as soon as send resolves.
    const copy = new Uint8Array(frame);
    return this.#sends.run(async () => {
      const peer = this.#peer;
      if (!peer) throw closedError();
      while (!this.#isClosed && peer.#inbox.isFull) await peer.#space.wait();
      if (this.#isClosed) throw closedError();
      peer.#inbox.push(copy);
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.#inbox.iterator();
  }

  close(reason = "closed"): Promise<void> {
    if (!this.#isClosed) {
      this.#shutdown(reason);
      if (this.#peer) this.#peer.#shutdown(reason);
    }
    return this.closed.then(() => undefined);
  }

  #shutdown(reason: string): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#inbox.end();
    // Wake senders blocked on either side so they see the close.
    this.#space.notify();
    if (this.#peer) this.#peer.#space.notify();
    this.#closed.resolve({ reason });
  }
}

function closedError(): TransportError {
  return new TransportError("Closed", "transport is closed");
}

/**
 * Two in-process transports connected to each other, for tests and for running client and
 * server in one process. Same semantics as a network transport: frames arrive in order, each
 * side buffers at most `maxBufferedFrames` for its consumer and a `send` waits while the peer's
 * buffer is full; closing either side closes both (the peer's iteration ends after its buffered
 * frames, with the reason passed to `close`). Frames are copied on `send`.
 *
 * Throws `TransportError("InvalidArgument")` for an out-of-range option.
 */
export function createMemoryPair(options: MemoryPairOptions = {}): [Transport, Transport] {
  const maxBufferedFrames = checkInteger(
    "maxBufferedFrames",
    options.maxBufferedFrames ?? DEFAULT_MAX_BUFFERED_FRAMES,
    1,
    1_000_000,
  );
  const maxFrameBytes = checkInteger(
    "maxFrameBytes",
    options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    1,
    2 ** 31,
  );
  const a = new MemoryEnd(maxBufferedFrames, maxFrameBytes);
  const b = new MemoryEnd(maxBufferedFrames, maxFrameBytes);
  a.connect(b);
  b.connect(a);
  return [a, b];
}
