/**
 * Every way a transport can refuse an operation or lose a connection. Messages never carry keys,
 * plaintext or ciphertext: only the code and a short, fixed description of what went wrong.
 */
export type TransportErrorCode =
  /** An option or argument is out of range (a programming error, not a network event). */
  | "InvalidArgument"
  /** The operation does not fit the object's state (e.g. a second consumer of a transport). */
  | "InvalidState"
  /** The transport is closed: `send` after `close`, or a send cut off by the close. */
  | "Closed"
  /** The connection ended abnormally (socket error, abrupt close, failed keep-alive). */
  | "ConnectionLost"
  /** A connector could not open a connection (refused, DNS, HTTP error on upgrade). */
  | "ConnectFailed"
  /** A connect or handshake did not finish in time. */
  | "Timeout"
  /** A frame is over the configured limit (sent: rejected; received: connection closed). */
  | "FrameTooLarge"
  /** A received frame failed authentication or is malformed; the connection is closed. */
  | "BadFrame"
  /** The Noise handshake failed (malformed or unauthenticated message, peer went away). */
  | "HandshakeFailed"
  /** The server's Noise static key differs from the pinned one; the connection is closed. */
  | "ServerKeyMismatch";

/**
 * The one error class of `@pairwise/transport`. Narrow with {@link TransportError.is}:
 *
 * ```ts
 * if (TransportError.is(err, "ServerKeyMismatch")) { ... }
 * ```
 */
export class TransportError<C extends TransportErrorCode = TransportErrorCode> extends Error {
  override readonly name = "TransportError";
  readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
  }

  /** True when `err` is a {@link TransportError}, optionally of the given code. */
  static is<C extends TransportErrorCode>(err: unknown, code?: C): err is TransportError<C> {
    return err instanceof TransportError && (code === undefined || err.code === code);
  }
}

/** `err` as a TransportError: itself if it is one, else wrapped with `code` (cause kept). */
export function asTransportError(
  err: unknown,
  code: TransportErrorCode,
  message: string,
): TransportError {
  return TransportError.is(err) ? err : new TransportError(code, message, { cause: err });
}
