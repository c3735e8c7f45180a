import { TransportError } from "./errors.ts";

/** How a {@link FrameInbox} talks back to the transport that fills it. */
export interface FrameInboxOptions {
  /** Buffered frames at which {@link FrameInbox.isFull} turns true: the producer should pause. */
  readonly highWaterMark: number;
  /** Called whenever the consumer took a frame and the buffer is below the high-water mark. */
  readonly onSpace?: () => void;
  /** Called when the consumer leaves the iteration early (`break`): the transport closes. */
  readonly onReturn?: () => void;
}

interface PendingRead {
  resolve(result: IteratorResult<Uint8Array>): void;
  reject(error: unknown): void;
}

/**
 * The receive side of a transport: received frames wait here until the one consumer pulls them.
 * The producer (a socket, a peer) checks {@link FrameInbox.isFull} and stops reading when it is
 * full, and resumes at `onSpace`, so a slow consumer bounds the buffer instead of growing it.
 * After `end()` the consumer still gets every buffered frame, then `done`; after `fail()` it gets
 * the buffered frames, then the error.
 */
export class FrameInbox {
  readonly #frames: Uint8Array[] = [];
  readonly #pending: PendingRead[] = [];
  readonly #options: FrameInboxOptions;
  #finished = false;
  #error: TransportError | undefined;
  #claimed = false;

  constructor(options: FrameInboxOptions) {
    this.#options = options;
  }

  /** Frames buffered and not yet pulled. */
  get size(): number {
    return this.#frames.length;
  }

  /** True while the producer should not add more frames. */
  get isFull(): boolean {
    return this.#frames.length >= this.#options.highWaterMark;
  }

  /** True after `end` or `fail`. */
  get isFinished(): boolean {
    return this.#finished;
  }

  /** Adds a received frame (ignored after `end`/`fail`). */
  push(frame: Uint8Array): void {
    if (this.#finished) return;
    const reader = this.#pending.shift();
    if (reader) {
      reader.resolve({ done: false, value: frame });
      this.#options.onSpace?.();
    } else {
      this.#frames.push(frame);
    }
  }

  /** No more frames will come: the consumer ends after the buffered ones. */
  end(): void {
    if (this.#finished) return;
    this.#finished = true;
    for (const reader of this.#pending.splice(0)) reader.resolve({ done: true, value: undefined });
  }

  /** The connection failed: the consumer gets the buffered frames, then `error`. */
  fail(error: TransportError): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#error = error;
    for (const reader of this.#pending.splice(0)) reader.reject(error);
  }

  /** Pulls the next frame. */
  next(): Promise<IteratorResult<Uint8Array>> {
    const frame = this.#frames.shift();
    if (frame !== undefined) {
      if (!this.isFull) this.#options.onSpace?.();
      return Promise.resolve({ done: false, value: frame });
    }
    if (this.#error) return Promise.reject(this.#error);
    if (this.#finished) return Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
    });
  }

  /** The one consumer's iterator; a second call throws `TransportError("InvalidState")`. */
  iterator(): AsyncIterator<Uint8Array> {
    if (this.#claimed) {
      throw new TransportError("InvalidState", "a transport has only one consumer");
    }
    this.#claimed = true;
    return {
      next: () => this.next(),
      return: () => {
        this.#options.onReturn?.();
        return Promise.resolve({ done: true, value: undefined });
      },
    };
  }
}

/**
 * Internal probe: transports built on a {@link FrameInbox} expose, under this symbol, a
 * function returning how many received frames wait for the consumer. Tests use it to check that
 * buffering stays bounded; it is not part of the public API.
 */
export const BUFFERED_FRAMES: unique symbol = Symbol("pairwise.transport.bufferedFrames");

/** Reads the {@link BUFFERED_FRAMES} probe of a transport (undefined when it has none). */
export function bufferedFrames(transport: object): number | undefined {
  const probe = (transport as { [BUFFERED_FRAMES]?: () => number })[BUFFERED_FRAMES];
  return probe?.();
}
