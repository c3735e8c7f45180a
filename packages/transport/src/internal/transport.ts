/**
 * The transport contract: how authenticated, encrypted frames travel between a device and a
 * server. A transport knows nothing about messages — a frame is opaque bytes.
 */
import type { TransportError } from "./errors.ts";

/** How a transport ended: the close reason and, when it failed, the error that ended it. */
export interface TransportClosed {
  /** A short, fixed description (`"closed"`, `"peer closed"`, `"BadFrame"`, ...); no secrets. */
  reason: string;
  /** Set when the connection failed rather than closed cleanly. */
  error?: TransportError;
}

/** One open, bidirectional, ordered, message-framed connection. */
export interface Transport {
  /**
   * Sends one frame. Resolves once the frame is handed to the underlying connection's buffer;
   * while that buffer is above its high-water mark it waits (backpressure: a slow reader slows
   * the writer instead of growing memory). Rejects with `TransportError("Closed")` once closed
   * and `TransportError("FrameTooLarge")` for a frame over the transport's limit.
   */
  send(frame: Uint8Array): Promise<void>;
  /**
   * The frames received, in order. One consumer only. Ends when the peer closes cleanly; throws
   * `TransportError` when the connection fails. While the consumer does not pull, the transport
   * stops reading from the network after a bounded number of buffered frames. Leaving the
   * iteration early (`break`, `return()`) closes the transport, as with Node streams.
   */
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array>;
  /** Closes the connection (idempotent). Pending and later `send`s reject. */
  close(reason?: string): Promise<void>;
  /** Resolves when the connection is closed, for whatever reason; never rejects. */
  readonly closed: Promise<TransportClosed>;
}

/** A transport after a Noise XX handshake: the peer is authenticated by its static key. */
export interface SecureTransport extends Transport {
  /** The peer's Noise static public key (32-byte X25519). Identifies a device to the server. */
  readonly remoteStaticKey: Uint8Array;
  /** The Noise handshake hash (channel binding). */
  readonly handshakeHash: Uint8Array;
}

/** Opens a new transport: the composable "link" (`reconnecting(noise(websocket(url)))`). */
export type Connector<T extends Transport = Transport> = () => Promise<T>;
