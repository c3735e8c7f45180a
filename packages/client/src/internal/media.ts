import { createHash, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream, mkdirSync } from "node:fs";
import { rename, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  blobCiphertextSize,
  createBlobDecryptStream,
  createBlobEncryptStream,
  generateBlobKey,
} from "@pairwise/core";
import type { MediaPointer } from "@pairwise/core/proto";
import type { PairwiseDevice } from "./device.ts";
import { ClientError } from "./errors.ts";
import { expectResult } from "./relay-connection.ts";

/** Upload and download chunk size: well under the server's frame limit. */
const CHUNK = 512 * 1024;

/**
 * Encrypts bytes into the blob format with a fresh key while uploading the ciphertext to the
 * relay in chunks (memory stays bounded for any size). Returns the blob id, key and ciphertext
 * digest: what a media pointer or a history notification carries.
 */
export async function uploadEncrypted(
  device: PairwiseDevice,
  source: Readable,
  plaintextSize: number,
): Promise<{ blobId: string; key: Uint8Array; sha256: Uint8Array; ciphertextSize: number }> {
  const key = generateBlobKey();
  const encrypt = createBlobEncryptStream({ key });
  const total = blobCiphertextSize(plaintextSize);
  const send = chunkUploader(device, total);
  let pending = Buffer.alloc(0);
  // Chunks go up as they fill; the last one (never empty: a blob is at least a header and a
  // tag) waits for the end of the stream, because it carries the final flag and the digest.
  await pipeline(source, encrypt, async (ciphertext: AsyncIterable<Buffer>) => {
    for await (const chunk of ciphertext) {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length > CHUNK) {
        await send(pending.subarray(0, CHUNK));
        pending = pending.subarray(CHUNK);
      }
    }
  });
  if (encrypt.ciphertextBytes !== total)
    throw new ClientError("InvalidArgument", "the file changed while it was being sent");
  const blobId = await send(pending, encrypt.digest());
  return { blobId, key, sha256: encrypt.digest(), ciphertextSize: total };
}

/** Downloads a blob in chunks, checks its digest and decrypts it to `dest` (written atomically). */
export async function downloadDecrypted(
  device: PairwiseDevice,
  pointer: { blobId: string; key: Uint8Array; sha256: Uint8Array },
  dest: string,
  provider = "",
): Promise<void> {
  const conn = device.requireConnection();
  async function* chunks() {
    let offset = 0;
    let total = Infinity;
    while (offset < total) {
      const part = expectResult(
        await conn.request({
          case: "blobDownload",
          value: { blobId: pointer.blobId, offset: BigInt(offset), length: CHUNK, provider },
        }),
        "blobData",
      );
      total = Number(part.totalSize);
      if (part.data.length === 0) break;
      offset += part.data.length;
      yield part.data;
    }
  }
  const tmp = `${dest}.part-${randomUUID()}`;
  try {
    await pipeline(
      Readable.from(chunks()),
      createBlobDecryptStream({ key: pointer.key, expectedSha256: pointer.sha256 }),
      createWriteStream(tmp),
    );
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Reads and uploads a file; returns the media pointer fields for the message. */
export async function uploadFile(
  device: PairwiseDevice,
  path: string,
): Promise<Omit<MediaPointer, "$typeName">> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (cause) {
    throw new ClientError("InvalidArgument", "cannot read that file", { cause });
  }
  const uploaded = await uploadEncrypted(device, createReadStream(path), size);
  return {
    blobId: uploaded.blobId,
    key: uploaded.key,
    sha256: uploaded.sha256,
    size: BigInt(size),
    ciphertextSize: BigInt(uploaded.ciphertextSize),
    mimeType: "application/octet-stream",
    fileName: basename(path),
    caption: "",
    replyTo: "",
  };
}

/** Where a received file is saved: `home/files/<message id>-<safe name>`. */
export function receivedFilePath(home: string, messageId: string, fileName: string): string {
  const dir = join(home, "files");
  mkdirSync(dir, { recursive: true });
  const safe =
    basename(fileName)
      .replace(/[^\w.-]+/g, "_")
      .slice(0, 100) || "file";
  const id = createHash("sha256").update(messageId).digest("hex").slice(0, 16);
  return join(dir, `${id}-${safe}`);
}

/** Uploads bytes that are already encrypted (history-sync parts); returns the blob id. */
export async function uploadRaw(device: PairwiseDevice, ciphertext: Uint8Array): Promise<string> {
  const send = chunkUploader(device, ciphertext.length);
  let offset = 0;
  for (; offset + CHUNK < ciphertext.length; offset += CHUNK)
    await send(ciphertext.subarray(offset, offset + CHUNK));
  return send(ciphertext.subarray(offset), createHash("sha256").update(ciphertext).digest());
}

/**
 * The relay's chunked upload protocol for `total` bytes: the first chunk opens the upload
 * (declaring the size), each call appends at the current offset, and the call that passes the
 * SHA-256 of the whole blob is the final one and returns the blob id ("" before that).
 */
function chunkUploader(
  device: PairwiseDevice,
  total: number,
): (data: Uint8Array, finalSha256?: Uint8Array) => Promise<string> {
  const conn = device.requireConnection();
  let uploadId = "";
  let offset = 0;
  return async (data, finalSha256) => {
    const result = expectResult(
      await conn.request({
        case: "blobUpload",
        value: {
          uploadId,
          offset: BigInt(offset),
          data,
          final: finalSha256 !== undefined,
          ...(uploadId === "" ? { totalSize: BigInt(total) } : {}),
          ...(finalSha256 ? { sha256: finalSha256 } : {}),
        },
      }),
      "blobUpload",
    );
    uploadId = result.uploadId;
    offset += data.length;
    return result.blobId;
  };
}

/** Downloads a whole blob as bytes (history-sync parts; bounded by the caller's checks). */
export async function downloadRaw(
  device: PairwiseDevice,
  blobId: string,
  maxBytes: number,
): Promise<Uint8Array> {
  const conn = device.requireConnection();
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (;;) {
    const part = expectResult(
      await conn.request({
        case: "blobDownload",
        value: { blobId, offset: BigInt(offset), length: CHUNK },
      }),
      "blobData",
    );
    if (Number(part.totalSize) > maxBytes)
      throw new ClientError("InvalidArgument", "blob larger than announced");
    parts.push(part.data);
    offset += part.data.length;
    if (offset >= Number(part.totalSize) || part.data.length === 0) return Buffer.concat(parts);
  }
}
