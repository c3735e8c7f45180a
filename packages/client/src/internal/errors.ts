/** Every way the client runtime can fail; messages never contain keys or message bodies. */
export type ClientErrorCode =
  | "ServerRefused"
  | "Timeout"
  | "Disconnected"
  | "ProtocolError"
  | "NotRegistered"
  | "InvalidArgument"
  | "UntrustedContact"
  | "LinkFailed"
  | "StorageFailure";

/** Details some codes carry. */
export interface ClientErrorDetails {
  /** The server's error code, for "ServerRefused". */
  serverCode?: string;
  /** Device-set differences the server reported ("MismatchedDevices"). */
  mismatches?: Array<{ accountId: string; missing: number[]; extra: number[]; stale: number[] }>;
  cause?: unknown;
}

/** The one error class of `@pairwise/client`; narrow with {@link ClientError.is}. */
export class ClientError<C extends ClientErrorCode = ClientErrorCode> extends Error {
  override readonly name = "ClientError";
  readonly code: C;
  readonly serverCode: string | undefined;
  readonly mismatches: ClientErrorDetails["mismatches"];

  constructor(code: C, message: string, details: ClientErrorDetails = {}) {
    super(
      `${code}: ${message}`,
      details.cause === undefined ? undefined : { cause: details.cause },
    );
    this.code = code;
    this.serverCode = details.serverCode;
    this.mismatches = details.mismatches;
  }

  /** True when `err` is a {@link ClientError}, optionally of the given code. */
  static is<C extends ClientErrorCode>(err: unknown, code?: C): err is ClientError<C> {
    return err instanceof ClientError && (code === undefined || err.code === code);
  }
}
