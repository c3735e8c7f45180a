import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { BackupError } from "../internal/errors.ts";
import {
  checkObjectName,
  rechunk,
  withRetries,
  type BackupProvider,
  type RetryOptions,
  type StoredObject,
} from "../internal/provider.ts";

/** Options of {@link createS3Provider}. */
export interface S3ProviderOptions {
  /**
   * A configured client (region, credentials, endpoint). With a service that does not understand
   * streamed `aws-chunked` bodies, construct it with `requestChecksumCalculation: "WHEN_REQUIRED"`.
   */
  readonly client: S3Client;
  readonly bucket: string;
  /** Key prefix inside the bucket, e.g. `"backups/alice/"` (default none). */
  readonly prefix?: string;
  /** Bytes per multipart part (default 8 MiB, at least 5 MiB as S3 requires). */
  readonly partBytes?: number;
  /** Retries of each request (parts are buffered, so each is replayed whole). */
  readonly retry?: RetryOptions;
}

const MIN_PART = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;

/**
 * Backups in an S3 bucket (AWS or compatible) through `@aws-sdk/client-s3`, an optional peer
 * dependency. Objects of more than one part go up as a multipart upload, part by part (each
 * buffered once, retried with backoff); the object appears only when the upload completes, and
 * a failed one is aborted. Failures are `BackupError("ProviderFailure")`; a missing object is
 * `"NotFound"`.
 */
export function createS3Provider(options: S3ProviderOptions): BackupProvider {
  const { client, bucket } = options;
  const prefix = options.prefix ?? "";
  const partBytes = options.partBytes ?? 8 * 1024 * 1024;
  if (!Number.isSafeInteger(partBytes) || partBytes < MIN_PART) {
    throw new BackupError("InvalidArgument", "S3 parts must be at least 5 MiB");
  }
  const keyOf = (name: string) => prefix + checkObjectName(name);
  const retried = <T>(fn: () => Promise<T>) =>
    withRetries(fn, {
      retryable: (err) => !BackupError.is(err) && isTransient(err),
      ...options.retry,
    });

  return {
    name: "s3",
    maxObjectBytes: partBytes * MAX_PARTS,
    async put(name, body) {
      const Key = keyOf(name);
      const chunks = rechunk(body, partBytes)[Symbol.asyncIterator]();
      const first = await chunks.next();
      const second = first.done ? first : await chunks.next();
      try {
        if (second.done) {
          const Body = first.done ? Buffer.alloc(0) : first.value;
          await retried(() => client.send(new PutObjectCommand({ Bucket: bucket, Key, Body })));
          return;
        }
      } catch (err) {
        throw failure(err, "cannot upload to S3");
      }
      let UploadId: string | undefined;
      try {
        const created = await retried(() =>
          client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key })),
        );
        UploadId = created.UploadId;
        if (!UploadId) throw new BackupError("ProviderFailure", "S3 gave no upload id");
        const uploadId = UploadId;
        const parts: Array<{ ETag: string; PartNumber: number }> = [];
        const send = async (Body: Buffer) => {
          const PartNumber = parts.length + 1;
          const res = await retried(() =>
            client.send(
              new UploadPartCommand({ Bucket: bucket, Key, UploadId: uploadId, PartNumber, Body }),
            ),
          );
          if (!res.ETag) throw new BackupError("ProviderFailure", "S3 gave no part ETag");
          parts.push({ ETag: res.ETag, PartNumber });
        };
        await send(first.value as Buffer);
        await send(second.value);
        for (let next = await chunks.next(); !next.done; next = await chunks.next()) {
          await send(next.value);
        }
        await retried(() =>
          client.send(
            new CompleteMultipartUploadCommand({
              Bucket: bucket,
              Key,
              UploadId: uploadId,
              MultipartUpload: { Parts: parts },
            }),
          ),
        );
      } catch (err) {
        if (UploadId) {
          // Best effort: some S3-compatible services (s3rver) answer 405 here; parts then expire.
          await client
            .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }))
            .catch(() => undefined);
        }
        throw failure(err, "cannot upload to S3");
      }
    },
    async get(name) {
      try {
        const res = await retried(() =>
          client.send(new GetObjectCommand({ Bucket: bucket, Key: keyOf(name) })),
        );
        const body = res.Body as AsyncIterable<Uint8Array> | undefined;
        if (!body) throw new BackupError("ProviderFailure", "S3 returned no body");
        return (async function* () {
          try {
            yield* body;
          } catch (err) {
            throw failure(err, "S3 download failed");
          }
        })();
      } catch (err) {
        throw failure(err, "cannot download from S3");
      }
    },
    async delete(name) {
      try {
        await retried(() =>
          client.send(new DeleteObjectCommand({ Bucket: bucket, Key: keyOf(name) })),
        );
      } catch (err) {
        throw failure(err, "cannot delete from S3");
      }
    },
    async list(namePrefix) {
      const out: StoredObject[] = [];
      let ContinuationToken: string | undefined;
      try {
        do {
          const token = ContinuationToken;
          const res = await retried(() =>
            client.send(
              new ListObjectsV2Command({
                Bucket: bucket,
                Prefix: prefix + namePrefix,
                ...(token ? { ContinuationToken: token } : {}),
              }),
            ),
          );
          for (const o of res.Contents ?? []) {
            if (o.Key?.startsWith(prefix))
              out.push({ name: o.Key.slice(prefix.length), size: o.Size ?? 0 });
          }
          ContinuationToken = res.IsTruncated ? res.NextContinuationToken : undefined;
        } while (ContinuationToken);
      } catch (err) {
        throw failure(err, "cannot list S3 objects");
      }
      return out;
    },
  };
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata
    ?.httpStatusCode;
}

function isTransient(err: unknown): boolean {
  const status = statusOf(err);
  return status === undefined || status >= 500 || status === 429 || status === 408;
}

function failure(err: unknown, message: string): BackupError {
  if (BackupError.is(err)) return err;
  const name = (err as { name?: string } | undefined)?.name;
  if (name === "NoSuchKey" || name === "NotFound" || statusOf(err) === 404) {
    return new BackupError("NotFound", "no such backup object");
  }
  return new BackupError("ProviderFailure", message, { cause: err });
}
