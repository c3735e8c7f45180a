import { WebSocket } from "ws";
import { TransportError } from "./errors.ts";
import { checkInteger } from "./limits.ts";
import type { Connector, Transport } from "./transport.ts";
import {
  webSocketSettings,
  wrapWebSocket,
  type WebSocketTransportOptions,
} from "./websocket-transport.ts";

/** Options of {@link websocketConnector}. */
export interface WebSocketConnectorOptions extends WebSocketTransportOptions {
  /** `ws://` or `wss://` URL of the server. */
  readonly url: string | URL;
  /** Extra HTTP headers for the upgrade request (e.g. a user agent). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Time to open the TCP connection and finish the upgrade (default 10 000 ms). */
  readonly connectTimeoutMs?: number;
  /**
   * Every frame sent will be ciphertext (the connector is wrapped in `noise`): send them with an
   * all-zero masking key, which `ws` skips, instead of XORing each frame with 4 fresh random
   * bytes. RFC 6455 masks client frames so that a script cannot put bytes of its choosing on the
   * wire for a proxy to misread as HTTP; bytes nobody chose (AES-GCM output) need no such cover.
   * Leave it off for a transport that may carry plaintext. Default false.
   */
  readonly ciphertextOnly?: boolean;
}

/** The masking key of a frame whose payload is ciphertext: zero, so `ws` does not mask. */
const zeroMask = (mask: Buffer): void => {
  mask.fill(0);
};

/**
 * A connector that opens a WebSocket (`ws`) to `url` and returns it as a raw {@link Transport}
 * (one binary message per frame, see `wrapWebSocket` for backpressure and close semantics).
 * Compression is off: frames are encrypted, so it would only cost CPU.
 *
 * Throws `InvalidArgument` for bad options at creation. The connector rejects with
 * `TransportError("ConnectFailed")` (refused, DNS, HTTP status other than 101) or `Timeout`.
 */
export function websocketConnector(options: WebSocketConnectorOptions): Connector {
  const settings = webSocketSettings(options);
  const connectTimeoutMs = checkInteger(
    "connectTimeoutMs",
    options.connectTimeoutMs ?? 10_000,
    1,
    2 ** 31 - 1,
  );
  const url = new URL(options.url);
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new TransportError("InvalidArgument", "url must be ws: or wss:");
  }
  return () =>
    new Promise<Transport>((resolve, reject) => {
      const ws = new WebSocket(url, {
        headers: { ...options.headers },
        maxPayload: settings.maxFrameBytes,
        perMessageDeflate: false,
        handshakeTimeout: connectTimeoutMs,
        ...(options.ciphertextOnly ? { generateMask: zeroMask } : {}),
      });
      const timer = setTimeout(() => {
        reject(new TransportError("Timeout", "WebSocket connect timed out"));
        ws.terminate();
      }, connectTimeoutMs);
      const onError = (err: Error): void => {
        clearTimeout(timer);
        reject(new TransportError("ConnectFailed", "WebSocket connect failed", { cause: err }));
      };
      ws.on("error", onError);
      ws.once("open", () => {
        clearTimeout(timer);
        ws.off("error", onError);
        resolve(wrapWebSocket(ws, settings));
      });
    });
}
