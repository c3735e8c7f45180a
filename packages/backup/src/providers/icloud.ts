import { createHash, createPrivateKey, sign, type KeyObject } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { BackupError } from "../internal/errors.ts";
import {
  checkObjectName,
  withRetries,
  type BackupProvider,
  type RetryOptions,
  type StoredObject,
} from "../internal/provider.ts";

/** CloudKit's limit on one asset; each backup part is one asset, so big backups span several. */
export const CLOUDKIT_MAX_ASSET_BYTES = 50 * 1000 * 1000;

/** Options of {@link createICloudProvider}. */
export interface ICloudProviderOptions {
  /** Container id, e.g. `iCloud.com.example.pairwise`. */
  readonly container: string;
  readonly environment: "development" | "production";
  /** The server-to-server key id from CloudKit Dashboard. */
  readonly keyId: string;
  /** The matching ECDSA P-256 private key (PEM or KeyObject). */
  readonly privateKey: string | KeyObject;
  /** Default `https://api.apple-cloudkit.com`; tests point it at a local fake. */
  readonly baseUrl?: string;
  /** Record type holding backup objects (default `PairwiseBackupObject`, fields name/data). */
  readonly recordType?: string;
  /** Bytes per asset (default and maximum {@link CLOUDKIT_MAX_ASSET_BYTES}). */
  readonly maxAssetBytes?: number;
  readonly retry?: RetryOptions;
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
}

interface AssetReceipt {
  fileChecksum: string;
  receipt: string;
  size: number;
  wrappingKey?: string;
  referenceChecksum?: string;
}

interface CkRecord {
  recordName: string;
  serverErrorCode?: string;
  fields?: {
    name?: { value: string };
    size?: { value: number };
    data?: { value: { downloadURL?: string; size?: number } };
  };
}

/**
 * Backups in CloudKit through CloudKit Web Services with a server-to-server key: every request
 * is signed (ECDSA P-256 SHA-256 over `date:base64(sha256(body)):path`). An object is one record
 * with one asset: the bytes are spooled to a private temporary file (bounded memory), uploaded
 * with `assets/upload`, and only then is the record created with `records/modify`, so a cut
 * upload leaves no record. Server-to-server keys reach the public database only: give the
 * record type no world-readable role (the bytes are ciphertext either way). Failures are
 * `BackupError("ProviderFailure")`; a missing object is `"NotFound"`.
 */
export function createICloudProvider(options: ICloudProviderOptions): BackupProvider {
  const base = (options.baseUrl ?? "https://api.apple-cloudkit.com").replace(/\/$/, "");
  const root = `/database/1/${options.container}/${options.environment}/public`;
  const recordType = options.recordType ?? "PairwiseBackupObject";
  const maxAsset = Math.min(
    options.maxAssetBytes ?? CLOUDKIT_MAX_ASSET_BYTES,
    CLOUDKIT_MAX_ASSET_BYTES,
  );
  const key =
    typeof options.privateKey === "string"
      ? createPrivateKey(options.privateKey)
      : options.privateKey;
  const doFetch = options.fetch ?? fetch;
  const now = options.now ?? Date.now;
  const retry = <T>(fn: () => Promise<T>) =>
    withRetries(fn, {
      ...options.retry,
      retryable: (err) => !BackupError.is(err) || err.code === "ProviderFailure",
    });
  const recordName = (name: string) =>
    `pw-${createHash("sha256").update(name).digest("hex").slice(0, 48)}`;

  /** A signed CloudKit request with a JSON body; returns the parsed JSON answer. */
  const call = <T>(operation: string, body: object): Promise<T> =>
    retry(async () => {
      const path = `${root}/${operation}`;
      const text = JSON.stringify(body);
      const date = new Date(now()).toISOString().replace(/\.\d{3}Z$/, "Z");
      const bodyHash = createHash("sha256").update(text).digest("base64");
      const signature = sign("sha256", Buffer.from(`${date}:${bodyHash}:${path}`), key).toString(
        "base64",
      );
      let res: Response;
      try {
        res = await doFetch(base + path, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "x-apple-cloudkit-request-keyid": options.keyId,
            "x-apple-cloudkit-request-iso8601date": date,
            "x-apple-cloudkit-request-signaturev1": signature,
          },
          body: text,
        });
      } catch (cause) {
        throw new BackupError("ProviderFailure", "cannot reach CloudKit", { cause });
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw new BackupError(
          "ProviderFailure",
          `CloudKit refused ${operation} (${String(res.status)})`,
        );
      }
      return (await res.json()) as T;
    });

  const lookup = async (name: string): Promise<CkRecord | undefined> => {
    const res = await call<{ records?: CkRecord[] }>("records/lookup", {
      records: [{ recordName: recordName(name) }],
    });
    const record = res.records?.[0];
    if (!record || record.serverErrorCode === "NOT_FOUND") return undefined;
    if (record.serverErrorCode) {
      throw new BackupError(
        "ProviderFailure",
        `CloudKit lookup failed (${record.serverErrorCode})`,
      );
    }
    return record;
  };

  return {
    name: "icloud",
    maxObjectBytes: maxAsset,
    async put(name, body) {
      checkObjectName(name);
      const dir = await mkdtemp(join(tmpdir(), "pairwise-icloud-"));
      const spool = join(dir, "asset");
      try {
        const handle = await open(spool, "wx", 0o600);
        let size = 0;
        try {
          for await (const chunk of body) {
            size += chunk.length;
            if (size > maxAsset)
              throw new BackupError("InvalidArgument", "object exceeds the CloudKit asset limit");
            // A write may take fewer bytes than asked (a filling disk): write the rest, or fail.
            for (let at = 0; at < chunk.length;) {
              const { bytesWritten } = await handle.write(chunk, at, chunk.length - at);
              if (bytesWritten <= 0)
                throw new BackupError("ProviderFailure", "cannot spool an iCloud asset to disk");
              at += bytesWritten;
            }
          }
        } finally {
          await handle.close();
        }
        const record = recordName(name);
        const receipt = await retry(async () => {
          const tokens = await call<{ tokens?: Array<{ url: string }> }>("assets/upload", {
            tokens: [{ recordType, fieldName: "data", recordName: record }],
          });
          const url = tokens.tokens?.[0]?.url;
          if (!url) throw new BackupError("ProviderFailure", "CloudKit gave no upload URL");
          return uploadFile(url, spool, (await stat(spool)).size);
        });
        const result = await call<{ records?: CkRecord[] }>("records/modify", {
          operations: [
            {
              operationType: "forceReplace",
              record: {
                recordType,
                recordName: record,
                fields: {
                  name: { value: name },
                  size: { value: size },
                  data: { value: receipt },
                },
              },
            },
          ],
        });
        const code = result.records?.[0]?.serverErrorCode;
        if (code)
          throw new BackupError("ProviderFailure", `CloudKit did not save the record (${code})`);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
    async get(name) {
      checkObjectName(name);
      const record = await lookup(name);
      const url = record?.fields?.data?.value.downloadURL;
      if (!record) throw new BackupError("NotFound", "no such backup object");
      if (!url) throw new BackupError("ProviderFailure", "CloudKit record has no asset");
      const res = await retry(async () => {
        let r: Response;
        try {
          r = await doFetch(url.replace("${f}", "asset"));
        } catch (cause) {
          throw new BackupError("ProviderFailure", "cannot reach CloudKit", { cause });
        }
        if (!r.ok || !r.body) {
          await r.body?.cancel();
          throw new BackupError(
            "ProviderFailure",
            `CloudKit download failed (${String(r.status)})`,
          );
        }
        return r;
      });
      const stream = res.body as ReadableStream<Uint8Array>;
      return (async function* () {
        try {
          for await (const chunk of stream) yield chunk;
        } catch (cause) {
          throw new BackupError("ProviderFailure", "CloudKit download failed", { cause });
        }
      })();
    },
    async delete(name) {
      checkObjectName(name);
      await call("records/modify", {
        operations: [{ operationType: "forceDelete", record: { recordName: recordName(name) } }],
      });
    },
    async list(prefix) {
      const out: StoredObject[] = [];
      let continuationMarker: string | undefined;
      do {
        const res = await call<{ records?: CkRecord[]; continuationMarker?: string }>(
          "records/query",
          {
            query: {
              recordType,
              filterBy: [
                { comparator: "BEGINS_WITH", fieldName: "name", fieldValue: { value: prefix } },
              ],
            },
            resultsLimit: 200,
            desiredKeys: ["name", "size"],
            ...(continuationMarker ? { continuationMarker } : {}),
          },
        );
        for (const r of res.records ?? []) {
          const name = r.fields?.name?.value;
          if (name?.startsWith(prefix)) out.push({ name, size: r.fields?.size?.value ?? 0 });
        }
        continuationMarker = res.continuationMarker;
      } while (continuationMarker);
      return out;
    },
  };
}

/** POSTs a spooled file to a CloudKit asset upload URL with its exact length. */
function uploadFile(url: string, path: string, size: number): Promise<AssetReceipt> {
  return new Promise<AssetReceipt>((resolve, reject) => {
    const target = new URL(url);
    const send = target.protocol === "https:" ? httpsRequest : httpRequest;
    const req = send(
      target,
      {
        method: "POST",
        headers: { "content-type": "application/octet-stream", "content-length": String(size) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", (cause) => {
          reject(new BackupError("ProviderFailure", "CloudKit asset upload failed", { cause }));
        });
        res.on("end", () => {
          if (res.statusCode !== 200) {
            reject(
              new BackupError(
                "ProviderFailure",
                `CloudKit asset upload refused (${String(res.statusCode)})`,
              ),
            );
            return;
          }
          try {
            const parsed = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
              singleFile?: AssetReceipt;
            };
            if (!parsed.singleFile?.receipt) throw new Error("no receipt");
            resolve(parsed.singleFile);
          } catch (cause) {
            reject(
              new BackupError("ProviderFailure", "CloudKit asset upload answered garbage", {
                cause,
              }),
            );
          }
        });
      },
    );
    req.on("error", (cause) => {
      reject(new BackupError("ProviderFailure", "CloudKit asset upload failed", { cause }));
    });
    pipeline(createReadStream(path), req).catch((cause: unknown) => {
      reject(new BackupError("ProviderFailure", "CloudKit asset upload failed", { cause }));
    });
  });
}
