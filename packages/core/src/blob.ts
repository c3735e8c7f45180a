// @pairwise/core/blob: the encrypted-blob format (media, history, backups) on its own. It loads
// no native code, so tools that only seal or open blobs (backups) stay small; everything here
// is also exported from `@pairwise/core`, and errors are the same `CoreError` class.
export {
  BLOB_CHUNK_SIZE,
  BLOB_KEY_BYTES,
  BLOB_MAGIC,
  BLOB_MAX_HEADER_BYTES,
  BLOB_NONCE_BYTES,
  BLOB_TAG_BYTES,
  BLOB_VERSION,
  blobCiphertextSize,
  createBlobDecryptStream,
  createBlobEncryptStream,
  createBlobOpener,
  createBlobSealer,
  decryptBlob,
  encryptBlob,
  generateBlobKey,
  readBlobHeader,
  type BlobDecryptOptions,
  type BlobEncryptOptions,
  type BlobHeader,
  type BlobKeySlot,
  type BlobOpener,
  type BlobSealer,
  type BlobStream,
  type SealedChunk,
} from "./internal/blob.ts";
export { CoreError, type CoreErrorCode } from "./internal/errors.ts";
