import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { createHash, randomBytes } from "node:crypto";
import { deflateRaw, inflateRaw, type ZlibOptions } from "node:zlib";
import {
  HistorySyncBundleSchema,
  HistorySyncNotification_PartSchema,
  HistorySyncNotificationSchema,
  type HistorySyncBundle,
  type HistorySyncNotification,
  type HistorySyncNotification_Part,
} from "../gen/pairwise_pb.ts";
import { BLOB_KEY_BYTES, decryptBlob, encryptBlob, generateBlobKey } from "./blob.ts";
import { bytesEqual, concatBytes } from "./bytes.ts";
import { CoreError } from "./errors.ts";
import { decodeProto, encodeProto } from "./proto.ts";

/** The only `HistorySyncBundle.version` this code writes and reads. */
export const HISTORY_BUNDLE_VERSION = 1;
/** Default cap on a decompressed history bundle (and on what the encoder will produce). */
export const DEFAULT_MAX_HISTORY_BYTES = 64 * 1024 * 1024;
/** Default size of one part's compressed slice before blob encryption. */
export const DEFAULT_HISTORY_PART_BYTES = 4 * 1024 * 1024;
/** Most parts one notification may name. */
export const MAX_HISTORY_PARTS = 1024;

/** Each part's plaintext starts with u32 BE part index ‖ u32 BE part count, then its slice. */
const PART_PREFIX = 8;

/** A history bundle as callers build it: the generated message or its plain init shape. */
export type HistoryBundleInit = MessageInitShape<typeof HistorySyncBundleSchema>;

/** Options of {@link createHistorySyncParts}. */
export interface CreateHistorySyncPartsOptions {
  /** Stores one encrypted part and returns its blob id. Its errors pass through unchanged. */
  readonly upload: (ciphertext: Uint8Array<ArrayBuffer>, index: number) => Promise<string>;
  /** Largest compressed slice per part; defaults to {@link DEFAULT_HISTORY_PART_BYTES}. */
  readonly maxPartBytes?: number;
  /** Randomness for part keys and blob nonces (tests); defaults to `crypto.randomBytes`. */
  readonly random?: (n: number) => Uint8Array;
}

/** Options of {@link openHistorySyncParts}. */
export interface OpenHistorySyncPartsOptions {
  /** Cap on the decompressed bundle; defaults to {@link DEFAULT_MAX_HISTORY_BYTES}. */
  readonly maxDecompressedBytes?: number;
  /** Cap on the summed ciphertext of all parts; defaults to 1.25 × `maxDecompressedBytes`. */
  readonly maxDownloadBytes?: number;
}

/**
 * Serializes a history bundle to protobuf and compresses it with raw DEFLATE (RFC 1951, zlib
 * level 6, no zlib or gzip framing: the blob around it already authenticates). Sets `version`
 * to {@link HISTORY_BUNDLE_VERSION} when unset. Throws `CoreError("InvalidArgument")` for another
 * version and `"InputTooLarge"` when the protobuf exceeds `maxBytes` (default 64 MiB).
 */
export async function encodeHistoryBundle(
  bundle: HistoryBundleInit,
  options: { readonly maxBytes?: number } = {},
): Promise<Uint8Array<ArrayBuffer>> {
  const message = create(HistorySyncBundleSchema, bundle);
  if (message.version === 0) message.version = HISTORY_BUNDLE_VERSION;
  if (message.version !== HISTORY_BUNDLE_VERSION) {
    throw new CoreError("InvalidArgument", "unsupported history bundle version");
  }
  const bytes = encodeProto(HistorySyncBundleSchema, message);
  const maxBytes = checkLimit(options.maxBytes ?? DEFAULT_MAX_HISTORY_BYTES, "maxBytes");
  if (bytes.length > maxBytes) throw new CoreError("InputTooLarge", "history bundle too large");
  return new Uint8Array(await zlib(deflateRaw, bytes, { level: 6 }).then((r) => r.buffer));
}

/**
 * Decompresses and decodes a bundle made by {@link encodeHistoryBundle}. Inflation stops at
 * `maxDecompressedBytes` (default 64 MiB), so a decompression bomb costs at most that much.
 * Throws `CoreError("InputTooLarge")` past the cap, `"MalformedInput"` for bad DEFLATE data,
 * trailing bytes, a bad protobuf or an unknown version, `"InvalidArgument"` for a bad cap.
 */
export async function decodeHistoryBundle(
  bytes: Uint8Array,
  options: { readonly maxDecompressedBytes?: number } = {},
): Promise<HistorySyncBundle> {
  const max = checkLimit(
    options.maxDecompressedBytes ?? DEFAULT_MAX_HISTORY_BYTES,
    "maxDecompressedBytes",
  );
  let inflated: { buffer: Buffer; consumed: number };
  try {
    inflated = await zlib(inflateRaw, bytes, { maxOutputLength: max });
  } catch (cause) {
    if (
      cause instanceof RangeError &&
      (cause as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE"
    ) {
      throw new CoreError("InputTooLarge", "history bundle decompresses past the limit");
    }
    throw new CoreError("MalformedInput", "history bundle is not valid DEFLATE data", { cause });
  }
  if (inflated.consumed !== bytes.length) {
    throw new CoreError("MalformedInput", "history bundle has trailing data");
  }
  const bundle = decodeProto(HistorySyncBundleSchema, inflated.buffer, "history bundle", max);
  if (bundle.version !== HISTORY_BUNDLE_VERSION) {
    throw new CoreError("MalformedInput", "unsupported history bundle version");
  }
  return bundle;
}

/**
 * Splits a compressed bundle into parts of at most `maxPartBytes`, encrypts each as a blob under
 * its own fresh key, uploads them in order through `upload`, and returns the notification to
 * send the companion over the pairwise session (it holds the keys: send it only encrypted).
 * Throws `CoreError("InvalidArgument")` for an empty bundle, a bad part size or an empty blob id,
 * `"InputTooLarge"` for more than {@link MAX_HISTORY_PARTS} parts; `upload` errors pass through.
 */
export async function createHistorySyncParts(
  compressed: Uint8Array,
  options: CreateHistorySyncPartsOptions,
): Promise<HistorySyncNotification> {
  const partBytes = checkLimit(options.maxPartBytes ?? DEFAULT_HISTORY_PART_BYTES, "maxPartBytes");
  if (compressed.length === 0) throw new CoreError("InvalidArgument", "history bundle is empty");
  const total = Math.ceil(compressed.length / partBytes);
  if (total > MAX_HISTORY_PARTS) {
    throw new CoreError("InputTooLarge", "history bundle has too many parts");
  }
  const random = options.random ?? randomBytes;
  const parts: HistorySyncNotification_Part[] = [];
  for (let index = 0; index < total; index++) {
    const prefix = Buffer.alloc(PART_PREFIX);
    prefix.writeUInt32BE(index, 0);
    prefix.writeUInt32BE(total, 4);
    const slice = compressed.subarray(index * partBytes, (index + 1) * partBytes);
    const key = generateBlobKey(random);
    const ciphertext = encryptBlob(key, concatBytes(prefix, slice), { random });
    const sha256 = new Uint8Array(createHash("sha256").update(ciphertext).digest());
    const blobId = await options.upload(ciphertext, index);
    if (typeof blobId !== "string" || blobId.length === 0) {
      throw new CoreError("InvalidArgument", "upload returned an empty blob id");
    }
    const ciphertextSize = BigInt(ciphertext.length);
    parts.push(create(HistorySyncNotification_PartSchema, { blobId, key, sha256, ciphertextSize }));
  }
  return create(HistorySyncNotificationSchema, { parts, totalParts: total });
}

/**
 * The companion's side: fetches every part named by `notification` through `fetchPart`, checks
 * each part's size and SHA-256 before decrypting it, checks that each sits at its own index,
 * joins them and decodes the bundle. Delete the keys afterwards (they are in `notification`).
 * Throws `CoreError("MalformedInput")` for a bad notification or parts out of order,
 * `"InputTooLarge"` past the size caps, `"DecryptionFailed"` for a part whose size, digest or
 * authentication fails, and whatever {@link decodeHistoryBundle} throws; `fetchPart` errors
 * pass through.
 */
export async function openHistorySyncParts(
  notification: HistorySyncNotification,
  fetchPart: (blobId: string, index: number) => Promise<Uint8Array>,
  options: OpenHistorySyncPartsOptions = {},
): Promise<HistorySyncBundle> {
  const maxDecompressedBytes = checkLimit(
    options.maxDecompressedBytes ?? DEFAULT_MAX_HISTORY_BYTES,
    "maxDecompressedBytes",
  );
  const maxDownload = checkLimit(
    options.maxDownloadBytes ?? Math.floor(maxDecompressedBytes * 1.25),
    "maxDownloadBytes",
  );
  const { parts } = notification;
  const total = parts.length;
  if (total === 0 || total > MAX_HISTORY_PARTS || notification.totalParts !== total) {
    throw new CoreError("MalformedInput", "history sync notification has a bad part count");
  }
  let download = 0n;
  for (const part of parts) {
    if (
      part.blobId.length === 0 ||
      part.key.length !== BLOB_KEY_BYTES ||
      part.sha256.length !== 32
    ) {
      throw new CoreError("MalformedInput", "history sync notification has a bad part");
    }
    download += part.ciphertextSize;
  }
  if (download > BigInt(maxDownload)) {
    throw new CoreError("InputTooLarge", "history sync parts too large");
  }

  const slices: Uint8Array[] = [];
  for (const [index, part] of parts.entries()) {
    const ciphertext = await fetchPart(part.blobId, index);
    const digest = createHash("sha256").update(ciphertext).digest();
    if (BigInt(ciphertext.length) !== part.ciphertextSize || !bytesEqual(digest, part.sha256)) {
      throw new CoreError("DecryptionFailed", "history sync part does not match its digest");
    }
    const plaintext = decryptBlob(part.key, ciphertext);
    const view = Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength);
    if (
      view.length < PART_PREFIX ||
      view.readUInt32BE(0) !== index ||
      view.readUInt32BE(4) !== total
    ) {
      throw new CoreError("MalformedInput", "history sync part is out of order");
    }
    slices.push(plaintext.subarray(PART_PREFIX));
  }
  return decodeHistoryBundle(concatBytes(...slices), { maxDecompressedBytes });
}

// ------------------------------------------------------------------------- internals

function checkLimit(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new CoreError("InvalidArgument", `${what} must be a positive integer`);
  }
  return value;
}

type ZlibCall = (
  input: Uint8Array,
  options: ZlibOptions,
  callback: (error: Error | null, result: unknown) => void,
) => void;

/** Runs a zlib one-shot off the main thread and reports how much input it consumed. */
function zlib(
  call: ZlibCall,
  input: Uint8Array,
  options: ZlibOptions,
): Promise<{ buffer: Buffer; consumed: number }> {
  return new Promise((resolve, reject) => {
    // `info: true` hands back the engine too, whose bytesWritten exposes trailing input.
    call(input, { ...options, info: true }, (error, result) => {
      if (error !== null) {
        reject(error);
        return;
      }
      const { buffer, engine } = result as { buffer: Buffer; engine: { bytesWritten: number } };
      resolve({ buffer, consumed: engine.bytesWritten });
    });
  });
}
