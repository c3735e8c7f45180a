/**
 * Every way core can refuse an input or an operation. Messages never carry keys, plaintext or
 * message bodies: only the code and a short, fixed description of what was wrong.
 */
export type CoreErrorCode =
  | "InvalidArgument"
  | "MalformedInput"
  | "InputTooLarge"
  | "BadSignature"
  | "UntrustedDevice"
  | "StaleDeviceList"
  | "ExpiredDeviceList"
  | "IdentityKeyChanged"
  | "DecryptionFailed"
  | "DuplicateMessage"
  | "NoSession"
  | "InvalidKey"
  | "StorageFailure"
  /** Another process holds the device's database (one process owns it). */
  | "DatabaseInUse";

/**
 * The one error class of `@pairwise/core`. Narrow with {@link CoreError.is}:
 *
 * ```ts
 * if (CoreError.is(err, "BadSignature")) { ... }
 * ```
 */
export class CoreError<C extends CoreErrorCode = CoreErrorCode> extends Error {
  override readonly name = "CoreError";
  readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
  }

  /** True when `err` is a {@link CoreError}, optionally of the given code. */
  static is<C extends CoreErrorCode>(err: unknown, code?: C): err is CoreError<C> {
    return err instanceof CoreError && (code === undefined || err.code === code);
  }
}
