import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import {
  BLOB_CHUNK_SIZE,
  BLOB_MAX_HEADER_BYTES,
  BLOB_TAG_BYTES,
  createBlobSealer,
} from "@pairwise/core/blob";
import { BackupError } from "./errors.ts";
import type { BackupKeyring } from "./keyring.ts";
import {
  DEFAULT_BACKUP_PREFIX,
  backupId,
  dataKey,
  sealManifest,
  type BackupManifest,
  type ManifestPart,
} from "./manifest.ts";
import { checkObjectName, type BackupProvider } from "./provider.ts";
import { RecordFramer, type BackupRecord } from "./records.ts";

/** One sealed 64 KiB chunk of the blob format with its tag. */
const SEALED_CHUNK_BYTES = BLOB_CHUNK_SIZE + BLOB_TAG_BYTES;
/** Parts being stored at once (one finishing while the next is written). */
const PUTS_IN_FLIGHT = 2;
/** Smallest part: the largest header and one sealed chunk. */
export const MIN_PART_BYTES = BLOB_MAX_HEADER_BYTES + SEALED_CHUNK_BYTES;

/** Default size of one stored part of a backup's ciphertext. */
export const DEFAULT_PART_BYTES = 64 * 1024 * 1024;

/** Progress of a running backup or restore. */
export interface BackupProgress {
  readonly plaintextBytes: number;
  readonly ciphertextBytes: number;
}

/** Options of {@link createBackup}. */
export interface CreateBackupOptions {
  readonly provider: BackupProvider;
  readonly keyring: BackupKeyring;
  /** What to back up, streamed (see `selectDeviceRecords`). */
  readonly records: AsyncIterable<BackupRecord> | Iterable<BackupRecord>;
  /**
   * This backup's sequence number: greater than every earlier backup of this keyring. The caller
   * keeps the last one (restores refuse manifests older than the newest seen).
   */
  readonly sequence: number;
  /** Folder at the provider (default `pairwise-backup`). */
  readonly prefix?: string;
  /** Bytes per stored part (default 64 MiB, capped by the provider's object limit). */
  readonly partBytes?: number;
  /** Labels stored, encrypted, in the manifest. */
  readonly labels?: Readonly<Record<string, string>>;
  readonly onProgress?: (progress: BackupProgress) => void;
  readonly now?: () => number;
  readonly random?: (n: number) => Uint8Array;
}

/**
 * Streams `records` through the blob STREAM format to the provider in parts, then writes the
 * manifest (contents, part digests, sequence number) last, so a cut or failed upload never
 * leaves a backup that restore accepts. Memory stays bounded whatever the size. On failure it
 * deletes what it uploaded (best effort) and rethrows: `BackupError("ProviderFailure")` from the
 * provider, `"InvalidArgument"` for bad options or records.
 */
export async function createBackup(options: CreateBackupOptions): Promise<BackupManifest> {
  const { provider, keyring } = options;
  const prefix = options.prefix ?? DEFAULT_BACKUP_PREFIX;
  if (!Number.isSafeInteger(options.sequence) || options.sequence < 1 || options.sequence >= 1e10) {
    throw new BackupError("InvalidArgument", "backup sequence must be 1..9999999999");
  }
  const partBytes = Math.min(options.partBytes ?? DEFAULT_PART_BYTES, provider.maxObjectBytes);
  if (!Number.isSafeInteger(partBytes) || partBytes < MIN_PART_BYTES) {
    throw new BackupError(
      "InvalidArgument",
      `part size must be at least ${String(MIN_PART_BYTES)} bytes`,
    );
  }
  const random = options.random ?? randomBytes;
  const id = backupId(options.sequence, Buffer.from(random(8)).toString("hex"));
  const folder = checkObjectName(`${prefix}/${id}`);
  const createdAt = (options.now ?? Date.now)();

  const sealer = createBlobSealer({ key: dataKey(keyring.key, id), random });
  // Sealed chunks waiting to be stored: the framer seals each chunk the moment it is full.
  const ready: Buffer[] = [];
  const framer = new RecordFramer(BLOB_CHUNK_SIZE, (chunk, last) => {
    const { body, tag } = sealer.seal(chunk, last);
    ready.push(body, tag);
  });
  const source = options.records;
  const records =
    Symbol.iterator in source ? source[Symbol.iterator]() : source[Symbol.asyncIterator]();
  let ended = false;
  /** Frames records until a sealed chunk is ready or the records end. */
  const produce = async (): Promise<void> => {
    while (ready.length === 0 && !ended) {
      const step = records.next();
      // A sync source is read without an await per record (a microtask each adds up at 1 GiB).
      const next = step instanceof Promise ? await step : step;
      if (next.done === true) {
        framer.end();
        ended = true;
      } else {
        framer.push(next.value);
      }
    }
  };

  /** Whether anything is left to store (call after `produce`). */
  const more = () => ready.length > 0 || !ended;

  // Parts hold whole sealed chunks (the first also the header), so each part's digest covers
  // the GCM tags of its own chunks; see `ManifestPart`.
  const chunksPerPart = Math.floor((partBytes - sealer.header.length) / SEALED_CHUNK_BYTES);
  const parts: ManifestPart[] = [];
  const uploaded: string[] = [];
  let ciphertextBytes = 0;
  let plaintextDone = 0;
  // Puts still finishing (flushing, closing) while the next part is produced.
  const storing = new Set<Promise<void>>();
  try {
    for (let index = 0; index === 0 || more(); index++) {
      const name = `part-${String(index).padStart(6, "0")}`;
      const digest = createHash("sha256");
      let size = 0;
      const header = index === 0 ? sealer.header : undefined;
      let produced = () => {};
      const bodyDone = new Promise<void>((resolve) => (produced = resolve));
      const body = async function* (): AsyncGenerator<Buffer> {
        try {
          if (header) {
            digest.update(header);
            size += header.length;
            ciphertextBytes += header.length;
            yield header;
          }
          for (let chunks = 0; chunks < chunksPerPart; chunks++) {
            await produce();
            const sealed = ready.shift();
            const tag = ready.shift();
            if (!sealed || !tag) return;
            digest.update(tag);
            size += sealed.length + tag.length;
            plaintextDone += sealed.length;
            ciphertextBytes += sealed.length + tag.length;
            options.onProgress?.({ plaintextBytes: plaintextDone, ciphertextBytes });
            yield sealed;
            yield tag;
          }
        } finally {
          produced();
        }
      };
      uploaded.push(`${folder}/${name}`);
      const put = provider.put(`${folder}/${name}`, body()).then(() => {
        parts[index] = { name, size, digest: new Uint8Array(digest.digest()) };
      });
      storing.add(put);
      // A failed put stays in `storing`, so the next wait on it (or the final one) throws: one
      // that failed while another part was being stored must not be forgotten, or the manifest
      // would list a part that was never stored.
      put.then(
        () => storing.delete(put),
        () => {},
      );
      // The next part starts once this one's body is produced (its provider may still be
      // flushing it: the disk works while the next chunks are sealed); two at most in flight.
      await Promise.race([bodyDone, put]);
      if (storing.size >= PUTS_IN_FLIGHT) await Promise.race(storing);
      await produce();
    }
    await Promise.all(storing);
    // Checked again before the manifest, which must never name a part that was not stored.
    for (let index = 0; index < uploaded.length; index++) {
      if (parts[index] === undefined) {
        throw new BackupError("ProviderFailure", "a part of the backup was not stored");
      }
    }
    const manifest: BackupManifest = {
      id,
      sequence: options.sequence,
      createdAt,
      parts,
      chunks: sealer.chunks,
      ciphertextBytes,
      plaintextBytes: framer.stats.bytes,
      records: framer.stats.records,
      tables: framer.stats.tables,
      labels: { ...options.labels },
    };
    const sealed = sealManifest(keyring.key, keyring.slots, manifest);
    await provider.put(`${folder}/manifest`, Readable.from([sealed]));
    return manifest;
  } catch (err) {
    await Promise.allSettled(storing);
    await records.return?.();
    await Promise.allSettled(uploaded.map((name) => provider.delete(name)));
    throw err;
  }
}
