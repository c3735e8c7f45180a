import { createHash } from "node:crypto";
import {
  BLOB_CHUNK_SIZE,
  BLOB_MAX_HEADER_BYTES,
  BLOB_TAG_BYTES,
  CoreError,
  createBlobOpener,
  type BlobOpener,
} from "@pairwise/core/blob";
import type { BackupProgress } from "./create-backup.ts";
import { BackupError } from "./errors.ts";
import { unlockBackupKey, type BackupKeyring, type BackupUnlock } from "./keyring.ts";
import type { KeySlot } from "./key-slots.ts";
import {
  DEFAULT_BACKUP_PREFIX,
  MAX_MANIFEST_BYTES,
  dataKey,
  manifestSlots,
  openManifest,
  sequenceOfId,
  type BackupManifest,
} from "./manifest.ts";
import { checkObjectName, type BackupProvider } from "./provider.ts";
import { decodeRecords, type BackupRecord } from "./records.ts";

/**
 * Where restored records go, all or nothing: `put` may stage them, `commit` makes them the
 * device's data and runs only after every byte of the backup has been verified; `abort`
 * discards what was staged.
 */
export interface RestoreSink {
  put(record: BackupRecord): void | Promise<void>;
  commit(): void | Promise<void>;
  abort(): void | Promise<void>;
}

/** A backup at a provider, as its object names show it (no key needed). */
export interface BackupListing {
  readonly id: string;
  readonly sequence: number;
  /** Has a manifest: only then can it be restored. */
  readonly complete: boolean;
  /** Bytes stored (parts and manifest). */
  readonly storedBytes: number;
}

/** Options shared by restore and inspect. */
export interface OpenBackupOptions {
  readonly provider: BackupProvider;
  readonly unlock: BackupUnlock;
  /** The backup; default the complete backup with the highest sequence number. */
  readonly id?: string;
  readonly prefix?: string;
  /**
   * The newest sequence number this device has seen (written or restored). A manifest older than
   * it is refused with `BackupError("RolledBack")`.
   */
  readonly minSequence?: number;
}

/** Options of {@link restoreBackup}. */
export interface RestoreBackupOptions extends OpenBackupOptions {
  readonly sink: RestoreSink;
  readonly onProgress?: (progress: BackupProgress) => void;
  /**
   * Called after a successful restore with the backup's keyring (its key and slots), so a new
   * device can go on backing up under the same recovery key.
   */
  readonly onKeyring?: (keyring: BackupKeyring) => void;
}

/**
 * Lists the backups under the prefix, newest first, complete or not. Needs no key.
 * Throws `BackupError("ProviderFailure")`.
 */
export async function listBackups(options: {
  provider: BackupProvider;
  prefix?: string;
}): Promise<BackupListing[]> {
  const prefix = `${options.prefix ?? DEFAULT_BACKUP_PREFIX}/`;
  const byId = new Map<string, { complete: boolean; storedBytes: number }>();
  for (const object of await options.provider.list(prefix)) {
    const [id, file, extra] = object.name.slice(prefix.length).split("/");
    if (id === undefined || file === undefined || extra !== undefined) continue;
    if (sequenceOfId(id) === undefined) continue;
    const entry = byId.get(id) ?? { complete: false, storedBytes: 0 };
    entry.storedBytes += object.size;
    if (file === "manifest") entry.complete = true;
    byId.set(id, entry);
  }
  return [...byId]
    .map(([id, e]) => ({ id, sequence: sequenceOfId(id) ?? 0, ...e }))
    .sort((a, b) => b.sequence - a.sequence || (a.id < b.id ? 1 : -1));
}

/**
 * Reads and verifies a backup's manifest with one unlock method, without touching its data.
 * Throws `BackupError`: "NotFound" (no complete backup), "Incomplete" (no manifest under that
 * id), "WrongKey", "Tampered", "RolledBack", "ProviderFailure".
 */
export async function inspectBackup(
  options: OpenBackupOptions,
): Promise<{ manifest: BackupManifest; slots: KeySlot[]; backupKey: Uint8Array }> {
  const prefix = options.prefix ?? DEFAULT_BACKUP_PREFIX;
  let id = options.id;
  if (id === undefined) {
    const latest = (await listBackups(options)).find((b) => b.complete);
    if (!latest) throw new BackupError("NotFound", "no complete backup at this provider");
    id = latest.id;
  } else if (sequenceOfId(id) === undefined) {
    throw new BackupError("InvalidArgument", "not a backup id");
  }
  const sealed = await readManifest(options.provider, checkObjectName(`${prefix}/${id}/manifest`));
  const slots = manifestSlots(sealed);
  const backupKey = await unlockBackupKey(slots, options.unlock);
  const manifest = openManifest(backupKey, id, sealed);
  if (options.minSequence !== undefined && manifest.sequence < options.minSequence) {
    throw new BackupError("RolledBack", "backup is older than one this device has seen");
  }
  return { manifest, slots, backupKey };
}

/**
 * Restores a backup all or nothing: unlocks it, verifies the manifest, streams every part while
 * checking its size and digest and decrypting (each 64 KiB chunk authenticated by its tag, at
 * the position the manifest puts it), hands records to the sink, and commits the sink only
 * after all of it verified; on any failure the sink is aborted and nothing is restored.
 * Throws `BackupError`: "WrongKey", "Tampered" (flipped bytes, truncation, reordered or swapped
 * parts or manifest), "RolledBack", "Incomplete" (a part missing), "NotFound",
 * "ProviderFailure", or the sink's own error.
 */
export async function restoreBackup(options: RestoreBackupOptions): Promise<BackupManifest> {
  const { manifest, backupKey, slots } = await inspectBackup(options);
  const prefix = options.prefix ?? DEFAULT_BACKUP_PREFIX;
  const provider = options.provider;
  const key = dataKey(backupKey, manifest.id);
  const SEALED = BLOB_CHUNK_SIZE + BLOB_TAG_BYTES;
  // The ciphertext is the header, then `chunks` sealed chunks (all full but the last); the
  // authenticated manifest gives every size, so each unit is cut exactly where it must end.
  const headerLength =
    manifest.ciphertextBytes - manifest.plaintextBytes - manifest.chunks * BLOB_TAG_BYTES;
  const lastUnit = manifest.ciphertextBytes - headerLength - (manifest.chunks - 1) * SEALED;
  if (
    manifest.chunks < 1 ||
    headerLength < 1 ||
    headerLength > BLOB_MAX_HEADER_BYTES ||
    lastUnit < BLOB_TAG_BYTES ||
    lastUnit > SEALED
  ) {
    throw new BackupError("Tampered", "backup sizes in the manifest do not add up");
  }
  let plaintextBytes = 0;
  let ciphertextBytes = 0;
  const plaintext = async function* (): AsyncGenerator<Buffer> {
    let opener: BlobOpener | undefined;
    let opened = 0;
    const unitSize = () =>
      opener === undefined ? headerLength : opened === manifest.chunks - 1 ? lastUnit : SEALED;
    let unit = Buffer.allocUnsafe(headerLength);
    let fill = 0;
    for (const part of manifest.parts) {
      let stream: AsyncIterable<Uint8Array>;
      try {
        stream = await provider.get(checkObjectName(`${prefix}/${manifest.id}/${part.name}`));
      } catch (err) {
        if (BackupError.is(err, "NotFound")) {
          throw new BackupError("Incomplete", "a part of the backup is missing");
        }
        throw err;
      }
      const digest = createHash("sha256");
      let size = 0;
      for await (const piece of stream) {
        size += piece.length;
        if (size > part.size) throw new BackupError("Tampered", "a backup part is too long");
        let at = 0;
        while (at < piece.length) {
          if (opened === manifest.chunks) {
            throw new BackupError("Tampered", "backup data runs past its last chunk");
          }
          const n = Math.min(piece.length - at, unit.length - fill);
          unit.set(piece.subarray(at, at + n), fill);
          fill += n;
          at += n;
          if (fill < unit.length) continue;
          if (opener === undefined) {
            opener = createBlobOpener(key, unit);
            if (opener.headerLength !== headerLength) {
              throw new BackupError("Tampered", "backup header does not match the manifest");
            }
            digest.update(unit);
          } else {
            const last = opened === manifest.chunks - 1;
            const plain = opener.open(unit, last);
            opened++;
            digest.update(unit.subarray(unit.length - BLOB_TAG_BYTES));
            plaintextBytes += plain.length;
            ciphertextBytes += unit.length;
            options.onProgress?.({ plaintextBytes, ciphertextBytes });
            if (plain.length > 0) yield plain;
          }
          unit = Buffer.allocUnsafe(unitSize());
          fill = 0;
        }
      }
      // Parts end on chunk boundaries; a part cut short or swapped shows here at the latest.
      if (size !== part.size || fill !== 0 || !digest.digest().equals(part.digest)) {
        throw new BackupError("Tampered", "a backup part does not match the manifest");
      }
    }
    if (opened !== manifest.chunks) {
      throw new BackupError("Tampered", "backup is shorter than its manifest says");
    }
  };
  try {
    const tables: Record<string, number> = {};
    let records = 0;
    for await (const record of decodeRecords(plaintext())) {
      tables[record.table] = (tables[record.table] ?? 0) + 1;
      records++;
      await options.sink.put(record);
    }
    if (
      records !== manifest.records ||
      Object.entries(manifest.tables).some(([t, n]) => tables[t] !== n)
    ) {
      throw new BackupError("Tampered", "backup contents do not match the manifest");
    }
  } catch (err) {
    await options.sink.abort();
    throw mapFailure(err);
  }
  await options.sink.commit();
  options.onKeyring?.({ key: backupKey, slots });
  return manifest;
}

function mapFailure(err: unknown): unknown {
  if (CoreError.is(err)) {
    return new BackupError("Tampered", "backup data does not authenticate", { cause: err });
  }
  return err;
}

async function readManifest(provider: BackupProvider, name: string): Promise<Uint8Array> {
  let stream: AsyncIterable<Uint8Array>;
  try {
    stream = await provider.get(name);
  } catch (err) {
    if (BackupError.is(err, "NotFound")) {
      throw new BackupError("Incomplete", "backup has no manifest (unfinished or cut upload)");
    }
    throw err;
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += chunk.length;
    if (size > MAX_MANIFEST_BYTES)
      throw new BackupError("Tampered", "backup manifest is too large");
    chunks.push(chunk);
  }
  return new Uint8Array(Buffer.concat(chunks));
}
