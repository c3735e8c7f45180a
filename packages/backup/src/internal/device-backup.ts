import type { KeyValueStore } from "@pairwise/core";
import { createBackup, type BackupProgress } from "./create-backup.ts";
import { createStoreSink, selectDeviceRecords } from "./device-records.ts";
import { createKeyring, decodeKeyring, encodeKeyring, recoveryKeyOf } from "./keyring.ts";
import type { BackupKeyring, BackupUnlock } from "./keyring.ts";
import type { BackupManifest } from "./manifest.ts";
import type { BackupProvider } from "./provider.ts";
import { restoreBackup } from "./restore-backup.ts";

/** Where a device keeps its backup keyring: the `app` table of its store, under this key. */
export const DEVICE_KEYRING_KEY = "backup|keyring";
/** Where a device keeps the newest backup sequence number it wrote or restored. */
export const DEVICE_SEQUENCE_KEY = "backup|sequence";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The device's backup keyring, or undefined before its first backup (or key enrolment). */
export function loadDeviceKeyring(store: KeyValueStore): BackupKeyring | undefined {
  const raw = store.get("app", DEVICE_KEYRING_KEY);
  return raw && decodeKeyring(dec.decode(raw));
}

/**
 * Stores the device's keyring (key changes apply to backups made afterwards), committed before
 * it returns (a store with group commit is flushed): its recovery key is about to be shown.
 */
export function saveDeviceKeyring(store: KeyValueStore, keyring: BackupKeyring): void {
  store.apply([
    { table: "app", key: DEVICE_KEYRING_KEY, value: enc.encode(encodeKeyring(keyring)) },
  ]);
  store.flush?.();
}

/**
 * The device's keyring, created and stored first if it has none; `created` says whether it was
 * (then show the user its recovery key).
 */
export function ensureDeviceKeyring(store: KeyValueStore): {
  keyring: BackupKeyring;
  created: boolean;
} {
  const existing = loadDeviceKeyring(store);
  if (existing) return { keyring: existing, created: false };
  const keyring = createKeyring();
  saveDeviceKeyring(store, keyring);
  return { keyring, created: true };
}

/** The newest backup sequence number this device wrote or restored (0: none). */
export function lastBackupSequence(store: KeyValueStore): number {
  const raw = store.get("app", DEVICE_SEQUENCE_KEY);
  const n = raw ? Number(dec.decode(raw)) : 0;
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

function sequenceWrite(sequence: number) {
  return { table: "app" as const, key: DEVICE_SEQUENCE_KEY, value: enc.encode(String(sequence)) };
}

/** Options of {@link backupDevice}. */
export interface BackupDeviceOptions {
  /** The device's store (history, contacts, settings are read; keyring and sequence kept). */
  readonly store: KeyValueStore;
  readonly provider: BackupProvider;
  /** Plain labels stored beside the backup (e.g. account and device id; never secrets). */
  readonly labels?: Readonly<Record<string, string>>;
  readonly onProgress?: (progress: BackupProgress) => void;
  /**
   * A sequence number the new backup must exceed besides the device's own (e.g. the highest at
   * the destination, so a re-linked device's backups stay the newest there).
   */
  readonly after?: number;
}

/** What {@link backupDevice} did. */
export interface DeviceBackupResult {
  readonly manifest: BackupManifest;
  readonly sequence: number;
  /** Present only when this backup created the device's keyring: show it to the user once. */
  readonly recoveryKey?: string;
}

/**
 * Backs a device's store up: its history, contacts and settings (never its keys, see
 * {@link selectDeviceRecords}) under the device's keyring (created on the first backup) with the
 * next sequence number. The keyring and sequence are stored only after the backup is complete;
 * a keyring changed meanwhile (a passkey enrolled) is kept and applies to the next backup.
 * Throws what {@link createBackup} throws.
 */
export async function backupDevice(options: BackupDeviceOptions): Promise<DeviceBackupResult> {
  const { store } = options;
  const existing = loadDeviceKeyring(store);
  const keyring = existing ?? createKeyring();
  const sequence = Math.max(lastBackupSequence(store), options.after ?? 0) + 1;
  const manifest = await createBackup({
    provider: options.provider,
    keyring,
    records: selectDeviceRecords(store),
    sequence,
    ...(options.labels ? { labels: options.labels } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  const created = loadDeviceKeyring(store) === undefined;
  store.apply([
    ...(sequence > lastBackupSequence(store) ? [sequenceWrite(sequence)] : []),
    ...(created
      ? [
          {
            table: "app" as const,
            key: DEVICE_KEYRING_KEY,
            value: enc.encode(encodeKeyring(keyring)),
          },
        ]
      : []),
  ]);
  store.flush?.(); // durable before the caller reports it done
  return { manifest, sequence, ...(created ? { recoveryKey: recoveryKeyOf(keyring) } : {}) };
}

/** Options of {@link restoreDevice}. */
export interface RestoreDeviceOptions {
  readonly store: KeyValueStore;
  readonly provider: BackupProvider;
  readonly unlock: BackupUnlock;
  /** The backup; default the newest complete one. */
  readonly id?: string;
  readonly onProgress?: (progress: BackupProgress) => void;
}

/**
 * Restores a backup into a device's store, all or nothing (through {@link createStoreSink}):
 * refuses a backup older than one the device has written or restored (`RolledBack`), and keeps
 * the restored keyring when the device has none, so it goes on backing up under the same
 * recovery key. Throws what {@link restoreBackup} throws; on any error the store is unchanged.
 */
export async function restoreDevice(
  options: RestoreDeviceOptions,
): Promise<{ manifest: BackupManifest; imported: number }> {
  const { store } = options;
  const sink = createStoreSink(store);
  const seen = lastBackupSequence(store);
  let restoredKeyring: BackupKeyring | undefined;
  const manifest = await restoreBackup({
    provider: options.provider,
    unlock: options.unlock,
    sink,
    ...(options.id === undefined ? {} : { id: options.id }),
    ...(seen > 0 ? { minSequence: seen } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    onKeyring: (k) => {
      restoredKeyring = k;
    },
  });
  store.apply([
    ...(manifest.sequence > lastBackupSequence(store) ? [sequenceWrite(manifest.sequence)] : []),
    ...(restoredKeyring && !loadDeviceKeyring(store)
      ? [
          {
            table: "app" as const,
            key: DEVICE_KEYRING_KEY,
            value: enc.encode(encodeKeyring(restoredKeyring)),
          },
        ]
      : []),
  ]);
  store.flush?.(); // durable before the caller reports it done
  return { manifest, imported: sink.written };
}
