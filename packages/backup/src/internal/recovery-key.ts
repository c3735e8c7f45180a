import { BackupError } from "./errors.ts";

/** Bytes of a backup key (and of the recovery key it is shown as). */
export const BACKUP_KEY_BYTES = 32;

/**
 * Shows a 32-byte backup key as the recovery key: 64 lowercase hex digits in 16 groups of 4,
 * separated by spaces. No digits are spent on a checksum: every digit is key, and a mistyped key
 * is caught by the key check in the backup header (`WrongKey`), not by the format.
 * Throws `BackupError("InvalidArgument")` for a key that is not 32 bytes.
 */
export function formatRecoveryKey(backupKey: Uint8Array): string {
  if (backupKey.length !== BACKUP_KEY_BYTES) {
    throw new BackupError("InvalidArgument", "a backup key is 32 bytes");
  }
  const hex = Buffer.from(backupKey).toString("hex");
  return (hex.match(/.{4}/g) ?? []).join(" ");
}

/**
 * Reads a recovery key as typed by a person: any case, any whitespace or dashes between digits.
 * Throws `BackupError("InvalidArgument")` unless exactly 64 hex digits remain.
 */
export function parseRecoveryKey(input: string): Uint8Array<ArrayBuffer> {
  const digits = input.replace(/[\s-]/g, "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(digits)) {
    throw new BackupError("InvalidArgument", "a recovery key is 64 hex digits");
  }
  return new Uint8Array(Buffer.from(digits, "hex"));
}
