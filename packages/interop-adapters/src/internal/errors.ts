/**
 * Every way an interop adapter refuses or fails. The message is short and fixed: it never holds
 * keys, plaintext or message bodies.
 */
export type InteropErrorCode =
  /** Bad configuration or argument (a partner entry, a policy name, an address). */
  | "InvalidArgument"
  /** The partner declared an end-to-end protocol below the required standard. */
  | "WeakProtocol"
  /** The peer is not an allow-listed partner, or presented another key than configured. */
  | "NotAllowed"
  /** The partner could not be reached (down, refused the connection, timed out). */
  | "PartnerUnavailable"
  /** The partner answered with an error (its code is in `remoteCode`). */
  | "PartnerRefused"
  /** A frame on the link did not decode or broke the link protocol. */
  | "MalformedFrame"
  /** The bridged network (e.g. the Telegram Bot API) failed a call. */
  | "BridgeFailed"
  /** The adapter is closed. */
  | "Closed";

/** Devices a partner has that a delivery lacked (missing), or the reverse (extra), or changed (stale). */
export interface DeviceMismatchInfo {
  accountId: string;
  missing: number[];
  extra: number[];
  stale: number[];
}

/** The one error class of `@pairwise/interop-adapters`; narrow with {@link InteropError.is}. */
export class InteropError<C extends InteropErrorCode = InteropErrorCode> extends Error {
  override readonly name = "InteropError";
  readonly code: C;
  /** For `PartnerRefused`: the partner's error code (e.g. "NotFound", "MismatchedDevices"). */
  readonly remoteCode: string | undefined;
  /** For a partner's "MismatchedDevices": the device differences it reported. */
  readonly mismatches: DeviceMismatchInfo[] | undefined;

  constructor(
    code: C,
    message: string,
    options?: { cause?: unknown; remoteCode?: string; mismatches?: DeviceMismatchInfo[] },
  ) {
    super(`${code}: ${message}`, options?.cause === undefined ? {} : { cause: options.cause });
    this.code = code;
    this.remoteCode = options?.remoteCode;
    this.mismatches = options?.mismatches?.length ? options.mismatches : undefined;
  }

  /** True when `err` is an {@link InteropError}, optionally of the given code. */
  static is<C extends InteropErrorCode>(err: unknown, code?: C): err is InteropError<C> {
    return err instanceof InteropError && (code === undefined || err.code === code);
  }
}
