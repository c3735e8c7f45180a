/**
 * Every way a backup operation can fail. Messages never carry keys, passwords, recovery keys or
 * backed-up data: only the code and a short, fixed description.
 *
 * - `InvalidArgument`: a caller's input is unusable (a malformed recovery key, a bad option).
 * - `WrongKey`: the recovery key, passkey or password does not open this backup.
 * - `Tampered`: the backup's bytes are not what its owner wrote (modified, truncated, reordered,
 *   a manifest from another backup).
 * - `RolledBack`: the manifest is older than a sequence number already seen.
 * - `Incomplete`: no manifest (a cut or unfinished upload) or a part is missing.
 * - `NotFound`: no such backup or object.
 * - `ProviderFailure`: the storage service failed or refused (after retries).
 * - `VaultRefused`: the password vault refused (no such record, login failed).
 * - `VaultLocked`: the vault destroyed the record after too many wrong guesses.
 * - `PasskeyFailed`: the authenticator gave no usable PRF result.
 */
export type BackupErrorCode =
  | "InvalidArgument"
  | "WrongKey"
  | "Tampered"
  | "RolledBack"
  | "Incomplete"
  | "NotFound"
  | "ProviderFailure"
  | "VaultRefused"
  | "VaultLocked"
  | "PasskeyFailed";

/**
 * The one error class of `@pairwise/backup`. Narrow with {@link BackupError.is}:
 *
 * ```ts
 * if (BackupError.is(err, "WrongKey")) { ... }
 * ```
 */
export class BackupError<C extends BackupErrorCode = BackupErrorCode> extends Error {
  override readonly name = "BackupError";
  readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
  }

  /** True when `err` is a {@link BackupError}, optionally of the given code. */
  static is<C extends BackupErrorCode>(err: unknown, code?: C): err is BackupError<C> {
    return err instanceof BackupError && (code === undefined || err.code === code);
  }
}
