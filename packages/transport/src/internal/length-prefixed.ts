import type { Duplex } from "node:stream";
import { SerialQueue, deferred } from "./async-primitives.ts";
import { TransportError } from "./errors.ts";
import { BUFFERED_FRAMES, FrameInbox } from "./frame-inbox.ts";
import { DEFAULT_MAX_BUFFERED_FRAMES, DEFAULT_MAX_FRAME_BYTES, checkInteger } from "./limits.ts";
import type { Transport, TransportClosed } from "./transport.ts";

/** Options of {@link lengthPrefixed}. */
export interface LengthPrefixedOptions {
  /** Largest frame sent or accepted (default 4 MiB); a larger announced length fails at once. */
  readonly maxFrameBytes?: number;
  /** Parsed frames buffered for a consumer that does not pull before reading pauses (64). */
  readonly maxBufferedFrames?: number;
}

const HEADER_BYTES = 4;

/**
 * Turns a byte stream (a `node:net` socket, a TLS socket, any Duplex) into a {@link Transport}:
 * every frame is `u32 big-endian length ‖ bytes`. A length over `maxFrameBytes` is refused
 * (`FrameTooLarge`, stream destroyed) as soon as the 4 header bytes arrive, before anything is
 * allocated for the body. Backpressure: `send` waits for `'drain'` while the stream's write
 * buffer is over its high-water mark; when `maxBufferedFrames` parsed frames wait for the
 * consumer, parsing stops and the stream is paused until the consumer pulls. A stream that ends
 * inside a frame fails the iteration with `BadFrame`; a stream error with `ConnectionLost`.
 *
 * Throws `TransportError("InvalidArgument")` for an out-of-range option.
 */
export function lengthPrefixed(stream: Duplex, options: LengthPrefixedOptions = {}): Transport {
  const maxFrameBytes = checkInteger(
    "maxFrameBytes",
    options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    1,
    2 ** 32 - 1,
  );
  const maxBufferedFrames = checkInteger(
    "maxBufferedFrames",
    options.maxBufferedFrames ?? DEFAULT_MAX_BUFFERED_FRAMES,
    1,
    1_000_000,
  );
  const chunks: Buffer[] = [];
  let buffered = 0;
  let ended = false;
  let isClosed = false;
  let closeReason: string | undefined;
  let failure: TransportError | undefined;
  const sends = new SerialQueue();
  const closed = deferred<TransportClosed>();

  const take = (n: number): Buffer => {
    const out = Buffer.allocUnsafe(n);
    let offset = 0;
    while (offset < n) {
      const head = chunks[0];
      if (!head) break;
      const used = Math.min(head.byteLength, n - offset);
      head.copy(out, offset, 0, used);
      offset += used;
      if (used === head.byteLength) chunks.shift();
      else chunks[0] = head.subarray(used);
    }
    buffered -= n;
    return out;
  };

  const peekLength = (): number => {
    const head = chunks[0];
    if (head && head.byteLength >= HEADER_BYTES) return head.readUInt32BE(0);
    const header = take(HEADER_BYTES);
    chunks.unshift(header);
    buffered += HEADER_BYTES;
    return header.readUInt32BE(0);
  };

  const fail = (error: TransportError): void => {
    failure ??= error;
    inbox.fail(error);
    stream.destroy();
  };

  const parse = (): void => {
    while (!inbox.isFull && !inbox.isFinished && buffered >= HEADER_BYTES) {
      const length = peekLength();
      if (length > maxFrameBytes) {
        fail(new TransportError("FrameTooLarge", "announced frame length over the limit"));
        return;
      }
      if (buffered < HEADER_BYTES + length) break;
      take(HEADER_BYTES);
      const frame = take(length);
      inbox.push(new Uint8Array(frame.buffer, frame.byteOffset, frame.byteLength));
    }
    if (ended && !inbox.isFull) {
      if (buffered === 0) inbox.end();
      else fail(new TransportError("BadFrame", "stream ended inside a frame"));
    }
  };

  const inbox = new FrameInbox({
    highWaterMark: maxBufferedFrames,
    onSpace: () => {
      parse();
      if (!inbox.isFull && stream.isPaused()) stream.resume();
    },
    onReturn: () => void transport.close("consumer stopped"),
  });

  stream.on("data", (chunk: Buffer) => {
    chunks.push(chunk);
    buffered += chunk.byteLength;
    parse();
    if (inbox.isFull) stream.pause();
  });
  stream.on("end", () => {
    ended = true;
    parse();
  });
  stream.on("error", (err) => {
    failure ??= new TransportError("ConnectionLost", "stream error", { cause: err });
    inbox.fail(failure);
  });
  stream.on("close", () => {
    isClosed = true;
    if (!ended && !failure && closeReason === undefined) {
      failure = new TransportError("ConnectionLost", "stream closed");
    }
    if (failure) {
      inbox.fail(failure);
    } else {
      // Frames already received stay readable; the iteration ends after them.
      ended = true;
      parse();
    }
    const reason = closeReason ?? (failure ? failure.code : "peer closed");
    closed.resolve(failure ? { reason, error: failure } : { reason });
  });

  const waitForDrain = (): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        stream.off("drain", done);
        stream.off("close", done);
        resolve();
      };
      stream.on("drain", done);
      stream.on("close", done);
    });

  const transport: Transport & { [BUFFERED_FRAMES]: () => number } = {
    [BUFFERED_FRAMES]: () => inbox.size,
    closed: closed.promise,
    send(frame) {
      if (isClosed || closeReason !== undefined) {
        return Promise.reject(new TransportError("Closed", "transport is closed"));
      }
      if (frame.byteLength > maxFrameBytes) {
        return Promise.reject(new TransportError("FrameTooLarge", "frame over the send limit"));
      }
      const packet = Buffer.allocUnsafe(HEADER_BYTES + frame.byteLength);
      packet.writeUInt32BE(frame.byteLength, 0);
      packet.set(frame, HEADER_BYTES);
      return sends.run(async () => {
        if (stream.writableNeedDrain) await waitForDrain();
        if (isClosed || closeReason !== undefined || stream.destroyed) {
          throw new TransportError("Closed", "transport is closed");
        }
        stream.write(packet);
      });
    },
    [Symbol.asyncIterator]: () => inbox.iterator(),
    close(reason = "closed") {
      if (closeReason === undefined && !isClosed) {
        closeReason = reason;
        stream.end(() => stream.destroy());
      }
      return closed.promise.then(() => undefined);
    },
  };
  return transport;
}
