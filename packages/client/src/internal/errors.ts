import { CoreError } from "@pairwise/core";

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

/** Relay refusals that describe the relay's state, not the request: asking again later can work. */
const PASSING_SERVER_CODES: ReadonlySet<string> = new Set([
  "Unavailable",
  "Internal",
  "RateLimited",
]);

/**
 * Whether `err` is a passing condition — the connection, the relay's or this device's storage,
 * the local disk (a Node system error such as ENOSPC) — rather than something wrong with what
 * was being handled. Work that fails with one is left to be done again (a message stays
 * unacknowledged, a pending job stays recorded); it is never given up as if it could not be done.
 */
export function isTransient(err: unknown): boolean {
  if (ClientError.is(err)) {
    if (err.code === "ServerRefused") return PASSING_SERVER_CODES.has(err.serverCode ?? "");
    return err.code === "Disconnected" || err.code === "Timeout" || err.code === "StorageFailure";
  }
  if (CoreError.is(err)) return err.code === "StorageFailure" || err.code === "DatabaseInUse";
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code);
}
