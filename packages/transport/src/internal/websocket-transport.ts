import type { WebSocket } from "ws";
import { SerialQueue, deferred } from "./async-primitives.ts";
import { TransportError } from "./errors.ts";
import { BUFFERED_FRAMES, FrameInbox } from "./frame-inbox.ts";
import {
  DEFAULT_HIGH_WATER_MARK_BYTES,
  DEFAULT_MAX_BUFFERED_FRAMES,
  DEFAULT_MAX_FRAME_BYTES,
  checkInteger,
} from "./limits.ts";
import type { Transport, TransportClosed } from "./transport.ts";

/** Tuning shared by the WebSocket client and acceptor. */
export interface WebSocketTransportOptions {
  /** Largest frame (one binary WebSocket message) sent or accepted (default 4 MiB). */
  readonly maxFrameBytes?: number;
  /** `send` waits while `ws.bufferedAmount` is above this many bytes (default 1 MiB). */
  readonly highWaterMarkBytes?: number;
  /** Received frames buffered for a consumer that does not pull before the socket pauses (64). */
  readonly maxBufferedFrames?: number;
  /** Ping interval; a connection without a pong for one interval is dropped (30 000; 0 = off). */
  readonly pingIntervalMs?: number;
  /** How long `close()` waits for the peer's close frame before dropping the socket (5 000). */
  readonly closeTimeoutMs?: number;
}

/** Resolved {@link WebSocketTransportOptions}. */
export interface WebSocketSettings {
  readonly maxFrameBytes: number;
  readonly highWaterMarkBytes: number;
  readonly maxBufferedFrames: number;
  readonly pingIntervalMs: number;
  readonly closeTimeoutMs: number;
}

/** Checks and fills in {@link WebSocketTransportOptions}; throws `InvalidArgument`. */
export function webSocketSettings(options: WebSocketTransportOptions): WebSocketSettings {
  return {
    maxFrameBytes: checkInteger(
      "maxFrameBytes",
      options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      1,
      2 ** 31,
    ),
    highWaterMarkBytes: checkInteger(
      "highWaterMarkBytes",
      options.highWaterMarkBytes ?? DEFAULT_HIGH_WATER_MARK_BYTES,
      0,
      2 ** 31,
    ),
    maxBufferedFrames: checkInteger(
      "maxBufferedFrames",
      options.maxBufferedFrames ?? DEFAULT_MAX_BUFFERED_FRAMES,
      1,
      1_000_000,
    ),
    pingIntervalMs: checkInteger(
      "pingIntervalMs",
      options.pingIntervalMs ?? 30_000,
      0,
      2 ** 31 - 1,
    ),
    closeTimeoutMs: checkInteger("closeTimeoutMs", options.closeTimeoutMs ?? 5_000, 1, 2 ** 31 - 1),
  };
}

const CLEAN_CLOSE_CODES = new Set([1000, 1001, 1005]);
const CLOSE_UNSUPPORTED_DATA = 1003;
const CLOSE_MESSAGE_TOO_BIG = 1009;

function truncateReason(reason: string): string {
  // A close frame's reason is at most 123 UTF-8 bytes.
  const bytes = Buffer.from(reason, "utf8");
  return bytes.byteLength <= 123 ? reason : bytes.subarray(0, 120).toString("utf8");
}

/**
 * Wraps an open `ws` WebSocket as a {@link Transport}: one binary message per frame.
 *
 * - `send` resolves once `ws.send` has queued the frame; while `ws.bufferedAmount` is above the
 *   high-water mark it first waits for the last queued write to reach the socket.
 * - Receiving: after `maxBufferedFrames` unread frames the socket is paused (`ws.pause()`) and
 *   resumed when the consumer pulls. Frames already decoded from the last socket read are still
 *   delivered, so the bound is `maxBufferedFrames` plus one socket read's worth.
 * - Close codes 1000/1001/1005 end the iteration; 1009 fails it with `FrameTooLarge`; a text
 *   message closes with 1003 and `BadFrame`; anything else is `ConnectionLost`.
 */
export function wrapWebSocket(ws: WebSocket, settings: WebSocketSettings): Transport {
  const sends = new SerialQueue();
  const closed = deferred<TransportClosed>();
  let lastWrite: Promise<void> = Promise.resolve();
  let isClosed = false;
  let localReason: string | undefined;
  let failure: TransportError | undefined;
  let closeTimer: NodeJS.Timeout | undefined;
  let pingTimer: NodeJS.Timeout | undefined;
  let alive = true;

  const inbox = new FrameInbox({
    highWaterMark: settings.maxBufferedFrames,
    onSpace: () => {
      if (ws.isPaused && !inbox.isFull) ws.resume();
    },
    onReturn: () => void transport.close("consumer stopped"),
  });

  const failWith = (error: TransportError, code: number): void => {
    failure ??= error;
    inbox.fail(failure);
    if (ws.readyState === ws.OPEN) ws.close(code, error.code);
  };

  ws.binaryType = "nodebuffer";
  ws.on("message", (data: Buffer, isBinary: boolean) => {
    alive = true;
    if (!isBinary) {
      failWith(
        new TransportError("BadFrame", "text message on a binary transport"),
        CLOSE_UNSUPPORTED_DATA,
      );
      return;
    }
    inbox.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    if (inbox.isFull) ws.pause();
  });
  ws.on("pong", () => {
    alive = true;
  });
  ws.on("error", (err) => {
    if (TransportError.is(failure)) return;
    const tooBig = (err as { code?: string }).code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH";
    failure = tooBig
      ? new TransportError("FrameTooLarge", "received frame over the limit", { cause: err })
      : new TransportError("ConnectionLost", "WebSocket error", { cause: err });
  });
  ws.on("close", (code: number, reasonBytes: Buffer) => {
    isClosed = true;
    clearTimeout(closeTimer);
    clearInterval(pingTimer);
    if (!failure && localReason === undefined) {
      if (code === CLOSE_MESSAGE_TOO_BIG) {
        failure = new TransportError("FrameTooLarge", "peer refused a frame over its limit");
      } else if (!CLEAN_CLOSE_CODES.has(code)) {
        failure = new TransportError("ConnectionLost", `connection closed abnormally (${code})`);
      }
    }
    if (failure) inbox.fail(failure);
    else inbox.end();
    const reason =
      localReason ?? (reasonBytes.toString("utf8") || (failure?.code ?? "peer closed"));
    closed.resolve(failure ? { reason, error: failure } : { reason });
  });

  if (settings.pingIntervalMs > 0) {
    pingTimer = setInterval(() => {
      // A paused socket cannot read pongs: a slow consumer is not a dead peer.
      if (ws.isPaused) return;
      if (!alive) {
        failure ??= new TransportError("ConnectionLost", "keep-alive timed out");
        ws.terminate();
        return;
      }
      alive = false;
      ws.ping();
    }, settings.pingIntervalMs);
    pingTimer.unref();
  }

  const transport: Transport & { [BUFFERED_FRAMES]: () => number } = {
    [BUFFERED_FRAMES]: () => inbox.size,
    closed: closed.promise,
    send(frame) {
      if (isClosed || localReason !== undefined) {
        return Promise.reject(new TransportError("Closed", "transport is closed"));
      }
      if (frame.byteLength > settings.maxFrameBytes) {
        return Promise.reject(new TransportError("FrameTooLarge", "frame over the send limit"));
      }
      // Copy: ws may hold the buffer until it is written, and the caller may reuse it.
      const copy = Buffer.from(frame);
      return sends.run(async () => {
        if (ws.bufferedAmount > settings.highWaterMarkBytes) await lastWrite;
        if (isClosed || localReason !== undefined || ws.readyState !== ws.OPEN) {
          throw new TransportError("Closed", "transport is closed");
        }
        lastWrite = new Promise((resolve) => {
          ws.send(copy, { binary: true }, () => {
            resolve();
          });
        });
      });
    },
    [Symbol.asyncIterator]: () => inbox.iterator(),
    close(reason = "closed") {
      if (!isClosed && localReason === undefined) {
        localReason = reason;
        if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) {
          ws.close(1000, truncateReason(reason));
        }
        closeTimer = setTimeout(() => {
          ws.terminate();
        }, settings.closeTimeoutMs);
        closeTimer.unref();
      }
      return closed.promise.then(() => undefined);
    },
  };
  return transport;
}
