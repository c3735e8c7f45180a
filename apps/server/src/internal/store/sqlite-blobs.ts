import type { ServerStore } from "./server-store.ts";
import { bytes, type SqliteContext } from "./sqlite-context.ts";

type BlobMethods = Pick<ServerStore, "putBlob" | "getBlob">;

/** Blob metadata of the SQLite store; the bytes live in a blob store on disk or S3. */
export function createSqliteBlobs(ctx: SqliteContext): BlobMethods {
  const { db, run } = ctx;
  const insert = db.prepare<[string, number, Uint8Array, string, number]>(
    "INSERT INTO blobs (blob_id, size, sha256, owner, created_at) VALUES (?, ?, ?, ?, ?)",
  );
  const get = db.prepare<[string], { size: number; sha256: Buffer }>(
    "SELECT size, sha256 FROM blobs WHERE blob_id = ?",
  );
  return {
    putBlob: (blob) =>
      run(() => {
        insert.run(blob.blobId, blob.size, blob.sha256, blob.owner, blob.now);
      }),
    getBlob: (blobId) =>
      run(() => {
        const row = get.get(blobId);
        return row && { blobId, size: row.size, sha256: bytes(row.sha256) };
      }),
  };
}
