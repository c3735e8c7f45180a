/**
 * Every way the server refuses a request or fails an operation. The code travels to the client
 * in `Error.code`; the message is short and fixed and never contains keys or ciphertext.
 */
export type ServerErrorCode =
  | "InvalidRequest"
  | "Unauthorized"
  | "NotFound"
  | "Conflict"
  | "StaleDeviceList"
  | "MismatchedDevices"
  | "TooManyDevices"
  | "RateLimited"
  | "PayloadTooLarge"
  | "Expired"
  | "Unavailable"
  | "Internal";

/** The one error class of `@pairwise/server`; narrow with {@link ServerError.is}. */
export class ServerError<C extends ServerErrorCode = ServerErrorCode> extends Error {
  override readonly name = "ServerError";
  readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
  }

  /** True when `err` is a {@link ServerError}, optionally of the given code. */
  static is<C extends ServerErrorCode>(err: unknown, code?: C): err is ServerError<C> {
    return err instanceof ServerError && (code === undefined || err.code === code);
  }
}
