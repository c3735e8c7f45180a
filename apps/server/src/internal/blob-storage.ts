import { createHash, randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { open, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { ServerError } from "./errors.ts";

/** Where encrypted blobs live: the data directory's disk (default) or S3 (see s3-blob-storage.ts). */
export interface BlobStorage {
  /** Starts an upload of `total` bytes; returns its id. */
  begin(owner: string, total: number, now: number): Promise<string>;
  /** Appends a chunk at `offset` (must be the current end). */
  append(
    owner: string,
    uploadId: string,
    offset: number,
    data: Uint8Array,
    now: number,
  ): Promise<void>;
  /** Completes an upload: size and SHA-256 must match; returns the blob id. */
  finish(
    owner: string,
    uploadId: string,
    sha256: Uint8Array,
  ): Promise<{ blobId: string; size: number }>;
  /** Reads up to `length` bytes at `offset` of a stored blob. */
  read(
    blobId: string,
    offset: number,
    length: number,
  ): Promise<{ data: Uint8Array; total: number }>;
  /** Abandons every unfinished upload. */
  close(): Promise<void>;
}

/** A blob id as the server hands them out (16 random bytes, base64url). */
export const isBlobId = (id: string) => /^[A-Za-z0-9_-]{22}$/.test(id);

/**
 * Encrypted blobs (media, history bundles) on local disk: uploads arrive in chunks into a
 * temporary file, are checked against the declared size and SHA-256, fsynced, then renamed into
 * place under a random id (and the directory fsynced). The server cannot read them: they are ciphertext.
 */
export class DiskBlobStorage implements BlobStorage {
  private readonly uploads = new Map<
    string,
    {
      file: FileHandle;
      path: string;
      size: number;
      total: number;
      hash: ReturnType<typeof createHash>;
      owner: string;
      touched: number;
    }
  >();

  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
  ) {
    mkdirSync(join(dir, "tmp"), { recursive: true });
  }

  /** Starts an upload of `total` bytes; returns its id. */
  async begin(owner: string, total: number, now: number): Promise<string> {
    if (!Number.isSafeInteger(total) || total < 1 || total > this.maxBytes)
      throw new ServerError("PayloadTooLarge", "blob size not allowed");
    this.dropStale(now);
    const id = randomBytes(16).toString("base64url");
    const path = join(this.dir, "tmp", id);
    const file = await open(path, "wx");
    this.uploads.set(id, {
      file,
      path,
      size: 0,
      total,
      hash: createHash("sha256"),
      owner,
      touched: now,
    });
    return id;
  }

  /** Appends a chunk at `offset` (must be the current end). */
  async append(
    owner: string,
    uploadId: string,
    offset: number,
    data: Uint8Array,
    now: number,
  ): Promise<void> {
    const u = this.uploads.get(uploadId);
    if (!u || u.owner !== owner) throw new ServerError("NotFound", "no such upload");
    if (offset !== u.size)
      throw new ServerError("InvalidRequest", "chunk offset does not continue the upload");
    if (u.size + data.length > u.total)
      throw new ServerError("PayloadTooLarge", "chunk exceeds the declared size");
    await u.file.write(data);
    u.hash.update(data);
    u.size += data.length;
    u.touched = now;
  }

  /** Completes an upload: size and SHA-256 must match; returns the blob id. */
  async finish(
    owner: string,
    uploadId: string,
    sha256: Uint8Array,
  ): Promise<{ blobId: string; size: number }> {
    const { path, size } = await this.complete(owner, uploadId, sha256);
    const blobId = randomBytes(16).toString("base64url");
    await rename(path, join(this.dir, blobId));
    // The rename survives a power loss once the directory's entries are on disk too.
    const dir = await open(this.dir, "r");
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    return { blobId, size };
  }

  /**
   * Checks a finished upload (size and SHA-256) and hands over its fsynced temporary file; a
   * mismatch removes it. For storages that keep the bytes elsewhere once complete.
   */
  async complete(
    owner: string,
    uploadId: string,
    sha256: Uint8Array,
  ): Promise<{ path: string; size: number }> {
    const u = this.uploads.get(uploadId);
    if (!u || u.owner !== owner) throw new ServerError("NotFound", "no such upload");
    this.uploads.delete(uploadId);
    const digest = u.hash.digest();
    const ok = u.size === u.total && sha256.length === 32 && digest.equals(sha256);
    if (!ok) {
      await u.file.close();
      await rm(u.path, { force: true });
      throw new ServerError("InvalidRequest", "blob size or digest does not match");
    }
    await u.file.sync();
    await u.file.close();
    return { path: u.path, size: u.size };
  }

  /** Reads `length` bytes at `offset` of a stored blob. */
  async read(
    blobId: string,
    offset: number,
    length: number,
  ): Promise<{ data: Uint8Array; total: number }> {
    if (!isBlobId(blobId)) throw new ServerError("NotFound", "no such blob");
    const path = join(this.dir, blobId);
    let total: number;
    try {
      total = (await stat(path)).size;
    } catch {
      throw new ServerError("NotFound", "no such blob");
    }
    if (offset > total) throw new ServerError("InvalidRequest", "offset past the end");
    const n = Math.min(length, total - offset);
    const file = await open(path, "r");
    try {
      const data = new Uint8Array(n);
      await file.read(data, 0, n, offset);
      return { data, total };
    } finally {
      await file.close();
    }
  }

  private dropStale(now: number): void {
    for (const [id, u] of this.uploads) {
      if (now - u.touched > 10 * 60_000) {
        this.uploads.delete(id);
        void u.file.close().then(() => rm(u.path, { force: true }));
      }
    }
  }

  /** Abandons every unfinished upload. */
  async close(): Promise<void> {
    for (const u of this.uploads.values()) {
      await u.file.close();
      await rm(u.path, { force: true });
    }
    this.uploads.clear();
  }
}
