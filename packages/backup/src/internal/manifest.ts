import { hkdfSync } from "node:crypto";
import { CoreError, decryptBlob, encryptBlob, readBlobHeader } from "@pairwise/core/blob";
import { z } from "zod";
import { BackupError } from "./errors.ts";
import { decodeSlots, encodeSlots, type KeySlot } from "./key-slots.ts";

/** Default folder (object-name prefix) backups live under at a provider. */
export const DEFAULT_BACKUP_PREFIX = "pairwise-backup";
/** Largest manifest object accepted. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

const ID_PATTERN = /^(\d{10})-([0-9a-f]{16})$/;

/** A backup id: zero-padded sequence number, a dash, 16 random hex digits. */
export function backupId(sequence: number, randomHex: string): string {
  return `${String(sequence).padStart(10, "0")}-${randomHex}`;
}

/** The sequence number an id starts with, or undefined for a name that is not a backup id. */
export function sequenceOfId(id: string): number | undefined {
  const m = ID_PATTERN.exec(id);
  return m ? Number(m[1]) : undefined;
}

/**
 * One stored piece of a backup's ciphertext. A part holds whole sealed chunks (the first part
 * also the blob header). Its digest is SHA-256 over the header (first part only) and then the
 * 16-byte AES-GCM tags of its chunks in order: the chunk digests the manifest commits to. The
 * tags already authenticate every byte of their chunks under the backup's key (and bind each
 * chunk's position), so hashing the whole ciphertext again would add cost and no assurance.
 */
export interface ManifestPart {
  readonly name: string;
  readonly size: number;
  readonly digest: Uint8Array;
}

/** What a backup holds, read from its authenticated manifest. */
export interface BackupManifest {
  readonly id: string;
  readonly sequence: number;
  readonly createdAt: number;
  readonly parts: readonly ManifestPart[];
  /** Sealed 64 KiB chunks in the ciphertext. */
  readonly chunks: number;
  readonly ciphertextBytes: number;
  readonly plaintextBytes: number;
  readonly records: number;
  /** Records per table. */
  readonly tables: Readonly<Record<string, number>>;
  /** Free-form labels the writer chose (account id, device name); encrypted like the rest. */
  readonly labels: Readonly<Record<string, string>>;
}

const b64 = z
  .string()
  .regex(/^[A-Za-z0-9_-]*$/)
  .transform((s) => new Uint8Array(Buffer.from(s, "base64url")));
const count = z.number().int().nonnegative();
const manifestSchema = z.object({
  v: z.literal(2),
  id: z.string().regex(ID_PATTERN),
  sequence: count,
  createdAt: count,
  parts: z.array(
    z.object({
      name: z.string().regex(/^part-\d{6}$/),
      size: count,
      digest: b64.refine((d) => d.length === 32),
    }),
  ),
  chunks: count,
  ciphertextBytes: count,
  plaintextBytes: count,
  records: count,
  tables: z.record(z.string(), count),
  labels: z.record(z.string(), z.string()),
});

/** Key of a backup's data blob, bound to its id. */
export function dataKey(backupKey: Uint8Array, id: string): Uint8Array {
  return new Uint8Array(hkdfSync("sha256", backupKey, id, "Pairwise Backup Data v1", 32));
}

function manifestKey(backupKey: Uint8Array, id: string): Uint8Array {
  return new Uint8Array(hkdfSync("sha256", backupKey, id, "Pairwise Backup Manifest v1", 32));
}

/** Encrypts a manifest as a blob whose header carries the key slots. */
export function sealManifest(
  backupKey: Uint8Array,
  slots: readonly KeySlot[],
  manifest: BackupManifest,
): Uint8Array {
  const json = JSON.stringify({
    v: 2,
    ...manifest,
    parts: manifest.parts.map((p) => ({
      ...p,
      digest: Buffer.from(p.digest).toString("base64url"),
    })),
  });
  return encryptBlob(manifestKey(backupKey, manifest.id), new TextEncoder().encode(json), {
    slots: encodeSlots(slots),
  });
}

/** The key slots of a sealed manifest, readable without any key. `Tampered` when malformed. */
export function manifestSlots(sealed: Uint8Array): KeySlot[] {
  try {
    return decodeSlots(readBlobHeader(sealed).slots);
  } catch (err) {
    if (BackupError.is(err)) throw err;
    throw new BackupError("Tampered", "backup manifest header is malformed", { cause: err });
  }
}

/**
 * Decrypts and parses a manifest that should belong to backup `id`. Throws
 * `BackupError("Tampered")` when it does not authenticate (modified, or another backup's
 * manifest moved here) or does not parse.
 */
export function openManifest(
  backupKey: Uint8Array,
  id: string,
  sealed: Uint8Array,
): BackupManifest {
  let plain: Uint8Array;
  try {
    plain = decryptBlob(manifestKey(backupKey, id), sealed);
  } catch (err) {
    if (CoreError.is(err)) {
      throw new BackupError("Tampered", "backup manifest does not authenticate", { cause: err });
    }
    throw err;
  }
  let parsed;
  try {
    parsed = manifestSchema.parse(JSON.parse(new TextDecoder().decode(plain)));
  } catch (cause) {
    throw new BackupError("Tampered", "backup manifest is malformed", { cause });
  }
  if (parsed.id !== id || sequenceOfId(id) !== parsed.sequence) {
    throw new BackupError("Tampered", "backup manifest belongs to another backup");
  }
  const { v: _v, ...manifest } = parsed;
  return manifest;
}
