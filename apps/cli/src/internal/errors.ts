/**
 * Every way the CLI itself refuses to go on (failures of the device runtime stay `ClientError`
 * and are mapped to messages in `output.ts`). "Usage" exits 2, "Interrupted" 130, the rest 1.
 */
export type CliErrorCode =
  "Usage" | "NotRegistered" | "NotConfirmed" | "Unsupported" | "Timeout" | "Interrupted" | "Failed";

/** The one error class of `@pairwise/cli`; its message is shown to the user as it is. */
export class CliError<C extends CliErrorCode = CliErrorCode> extends Error {
  override readonly name = "CliError";
  readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  /** True when `err` is a {@link CliError}, optionally of the given code. */
  static is<C extends CliErrorCode>(err: unknown, code?: C): err is CliError<C> {
    return err instanceof CliError && (code === undefined || err.code === code);
  }
}

/** A command line the CLI cannot act on (exit 2). */
export function usageError(message: string): CliError<"Usage"> {
  return new CliError("Usage", message);
}

/** The exit status for a CLI error code. */
export function exitCodeOf(code: CliErrorCode): number {
  if (code === "Usage") return 2;
  if (code === "Interrupted") return 130;
  return 1;
}
