// @pairwise/backup: end-to-end encrypted backups. Named exports only; providers are subpaths
// (`@pairwise/backup/fs`, …) and implementation lives in ./internal.
export { BackupError, type BackupErrorCode } from "./internal/errors.ts";
export { BACKUP_KEY_BYTES, formatRecoveryKey, parseRecoveryKey } from "./internal/recovery-key.ts";
export {
  PASSKEY_KEK_INFO,
  PASSWORD_KEK_INFO,
  SLOT_PASSKEY,
  SLOT_PASSWORD,
  SLOT_RECOVERY,
  type KeySlot,
  type PasskeySlot,
  type PasswordSlot,
  type RecoverySlot,
} from "./internal/key-slots.ts";
export {
  addPasskeySlot,
  addPasswordSlot,
  createKeyring,
  createPasskeySalt,
  decodeKeyring,
  encodeKeyring,
  recoveryKeyOf,
  removeSlots,
  unlockBackupKey,
  type BackupKeyring,
  type BackupUnlock,
  type PasskeyPrf,
  type PasskeyPrfResult,
  type PasswordOpener,
} from "./internal/keyring.ts";
export {
  MAX_RECORD_VALUE_BYTES,
  decodeRecords,
  encodeRecords,
  type BackupRecord,
} from "./internal/records.ts";
export {
  DEFAULT_BACKUP_PREFIX,
  type BackupManifest,
  type ManifestPart,
} from "./internal/manifest.ts";
export {
  checkObjectName,
  rechunk,
  withRetries,
  type BackupProvider,
  type RetryOptions,
  type StoredObject,
} from "./internal/provider.ts";
export {
  DEFAULT_PART_BYTES,
  createBackup,
  type BackupProgress,
  type CreateBackupOptions,
} from "./internal/create-backup.ts";
export {
  inspectBackup,
  listBackups,
  restoreBackup,
  type BackupListing,
  type OpenBackupOptions,
  type RestoreBackupOptions,
  type RestoreSink,
} from "./internal/restore-backup.ts";
export {
  DEVICE_BACKUP_SELECTION,
  createStoreSink,
  selectDeviceRecords,
} from "./internal/device-records.ts";
export {
  DEVICE_KEYRING_KEY,
  DEVICE_SEQUENCE_KEY,
  backupDevice,
  ensureDeviceKeyring,
  lastBackupSequence,
  loadDeviceKeyring,
  restoreDevice,
  saveDeviceKeyring,
  type BackupDeviceOptions,
  type DeviceBackupResult,
  type RestoreDeviceOptions,
} from "./internal/device-backup.ts";
