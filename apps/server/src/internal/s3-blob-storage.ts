import { createReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import {
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { DiskBlobStorage, isBlobId, type BlobStorage } from "./blob-storage.ts";
import { ServerError } from "./errors.ts";

/** Options of {@link S3BlobStorage}. */
export interface S3BlobStorageOptions {
  /** `s3://bucket` or `s3://bucket/prefix` */
  url: string;
  /** Local directory for uploads in progress (chunks arrive over several requests). */
  spoolDir: string;
  maxBytes: number;
  /** An S3-compatible endpoint (MinIO, s3rver …); path-style addressing is used with it. */
  endpoint?: string;
  region?: string;
  /** Credentials; otherwise the SDK's default chain (environment, profile, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

/** Parses `s3://bucket/prefix` into bucket and key prefix; "InvalidRequest" otherwise. */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m?.[1]) throw new ServerError("InvalidRequest", "blobs must be s3://bucket[/prefix]");
  const prefix = (m[2] ?? "").replace(/^\/+|\/+$/g, "");
  return { bucket: m[1], prefix: prefix ? `${prefix}/` : "" };
}

/**
 * Encrypted blobs on S3 (any node of a cluster can serve any blob). Uploads arrive in chunks over
 * several requests of one connection: they are spooled to a local file and checked (size,
 * SHA-256) exactly as on disk, then stored with one PUT under a random id; reads are ranged GETs.
 * The server cannot read the bytes: they are ciphertext.
 */
export class S3BlobStorage implements BlobStorage {
  private readonly spool: DiskBlobStorage;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;

  constructor(options: S3BlobStorageOptions) {
    ({ bucket: this.bucket, prefix: this.prefix } = parseS3Url(options.url));
    this.spool = new DiskBlobStorage(options.spoolDir, options.maxBytes);
    this.client = new S3Client({
      ...(options.endpoint ? { endpoint: options.endpoint, forcePathStyle: true } : {}),
      region: options.region ?? "us-east-1",
      ...(options.credentials ? { credentials: options.credentials } : {}),
      // The body is sent with its length from a file; no streaming checksum framing needed.
      requestChecksumCalculation: "WHEN_REQUIRED",
    });
  }

  begin(owner: string, total: number, now: number): Promise<string> {
    return this.spool.begin(owner, total, now);
  }

  append(
    owner: string,
    uploadId: string,
    offset: number,
    data: Uint8Array,
    now: number,
  ): Promise<void> {
    return this.spool.append(owner, uploadId, offset, data, now);
  }

  async finish(
    owner: string,
    uploadId: string,
    sha256: Uint8Array,
  ): Promise<{ blobId: string; size: number }> {
    const { path, size } = await this.spool.complete(owner, uploadId, sha256);
    const blobId = randomBytes(16).toString("base64url");
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.prefix + blobId,
          Body: createReadStream(path),
          ContentLength: size,
          ContentType: "application/octet-stream",
        }),
      );
    } catch (cause) {
      throw new ServerError("Unavailable", "blob store unavailable", { cause });
    } finally {
      await rm(path, { force: true });
    }
    return { blobId, size };
  }

  async read(
    blobId: string,
    offset: number,
    length: number,
  ): Promise<{ data: Uint8Array; total: number }> {
    if (!isBlobId(blobId)) throw new ServerError("NotFound", "no such blob");
    const key = this.prefix + blobId;
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      const total = head.ContentLength ?? 0;
      if (offset > total) throw new ServerError("InvalidRequest", "offset past the end");
      const n = Math.min(length, total - offset);
      if (n === 0) return { data: new Uint8Array(0), total };
      const got = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Range: `bytes=${offset}-${offset + n - 1}`,
        }),
      );
      const data = await got.Body?.transformToByteArray();
      if (data?.length !== n)
        throw new ServerError("Unavailable", "short read from the blob store");
      return { data, total };
    } catch (err) {
      if (ServerError.is(err)) throw err;
      if (
        err instanceof S3ServiceException &&
        (err.name === "NotFound" ||
          err.name === "NoSuchKey" ||
          err.$metadata.httpStatusCode === 404)
      )
        throw new ServerError("NotFound", "no such blob");
      throw new ServerError("Unavailable", "blob store unavailable", { cause: err });
    }
  }

  async close(): Promise<void> {
    await this.spool.close();
    this.client.destroy();
  }
}
