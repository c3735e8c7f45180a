// Blobs on S3 (s3rver on loopback, a real S3 HTTP API): uploaded through one relay node and read
// through another, since any node of a cluster must serve any blob.
import { createHash } from "node:crypto";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { expectResult } from "@pairwise/client";
import pino from "pino";
import S3rver from "s3rver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveConfig } from "../src/internal/config.ts";
import { S3BlobStorage, parseS3Url } from "../src/internal/s3-blob-storage.ts";
import { startServer, type RunningServer } from "../src/internal/server.ts";
import { ServerError } from "../src/internal/errors.ts";
import { TestDevice, tempDir } from "./support.ts";

const credentials = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };
let s3: S3rver;
let endpoint: string;
const nodes: RunningServer[] = [];
const dataDirs = new Map<RunningServer, string>();

async function node(): Promise<RunningServer> {
  const dataDir = tempDir("pairwise-s3-node-");
  const config = resolveConfig({ dataDir, host: "127.0.0.1", port: 0, logLevel: "silent" });
  const server = await startServer({
    config,
    logger: pino({ level: "silent" }),
    blobs: new S3BlobStorage({
      url: "s3://blobs/relay",
      spoolDir: join(dataDir, "blob-uploads"),
      maxBytes: config.maxBlobBytes,
      endpoint,
      credentials,
    }),
  });
  nodes.push(server);
  dataDirs.set(server, dataDir);
  return server;
}

beforeAll(async () => {
  s3 = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory: tempDir("pairwise-s3rver-"),
    configureBuckets: [{ name: "blobs" }],
  });
  const { port } = await s3.run();
  endpoint = `http://127.0.0.1:${String(port)}`;
});

afterAll(async () => {
  for (const n of nodes) await n.close();
  await s3.close();
});

describe("blobs on S3", () => {
  it("parses s3:// URLs and refuses anything else", () => {
    expect(parseS3Url("s3://bucket")).toEqual({ bucket: "bucket", prefix: "" });
    expect(parseS3Url("s3://my.bucket/a/b/")).toEqual({ bucket: "my.bucket", prefix: "a/b/" });
    for (const bad of ["s3://", "http://bucket", "s3://B", "bucket"])
      expect(() => parseS3Url(bad)).toThrow(ServerError);
    expect(resolveConfig({ blobs: "s3://bucket/x" }).blobs).toBe("s3://bucket/x");
    expect(() => resolveConfig({ blobs: "ftp://x" })).toThrow(/blobs/);
  });

  it("stores an upload checked on one node as one object, served by another node", async () => {
    const a = await node();
    const b = await node();
    const up = await TestDevice.register(a, "s3-uploader");
    const down = await TestDevice.register(b, "s3-reader");
    const data = new Uint8Array(700_000).map((_, i) => (i * 7) % 251);
    const sha256 = createHash("sha256").update(data).digest();
    const first = expectResult(
      await up.conn.request({
        case: "blobUpload",
        value: { totalSize: BigInt(data.length), offset: 0n, data: data.subarray(0, 400_000) },
      }),
      "blobUpload",
    );
    const done = expectResult(
      await up.conn.request({
        case: "blobUpload",
        value: {
          uploadId: first.uploadId,
          offset: 400_000n,
          data: data.subarray(400_000),
          final: true,
          sha256,
        },
      }),
      "blobUpload",
    );
    const client = new S3Client({
      endpoint,
      forcePathStyle: true,
      region: "us-east-1",
      credentials,
    });
    const listed = await client.send(
      new ListObjectsV2Command({ Bucket: "blobs", Prefix: "relay/" }),
    );
    expect(listed.Contents?.map((o) => [o.Key, o.Size])).toEqual([
      [`relay/${done.blobId}`, data.length],
    ]);
    client.destroy();

    const part = expectResult(
      await down.conn.request({
        case: "blobDownload",
        value: { blobId: done.blobId, offset: 650_000n, length: 100_000 },
      }),
      "blobData",
    );
    expect(part.totalSize).toBe(700_000n);
    expect(part.data).toEqual(data.subarray(650_000));
    // Nothing is left in the node's spool once the object is stored.
    expect(readdirSync(join(dataDirs.get(a) ?? "", "blob-uploads", "tmp"))).toEqual([]);

    const missing = await down.conn
      .request({
        case: "blobDownload",
        value: { blobId: "AAAAAAAAAAAAAAAAAAAAAA", offset: 0n, length: 10 },
      })
      .then(
        () => "resolved",
        (e: unknown) => (e as { serverCode?: string }).serverCode,
      );
    expect(missing).toBe("NotFound");
  });

  it("refuses an upload whose digest does not match and stores nothing", async () => {
    const a = nodes[0] ?? (await node());
    const d = await TestDevice.register(a, "s3-bad");
    const started = expectResult(
      await d.conn.request({
        case: "blobUpload",
        value: { totalSize: 3n, offset: 0n, data: Uint8Array.of(1, 2, 3) },
      }),
      "blobUpload",
    );
    const refused = await d.conn
      .request({
        case: "blobUpload",
        value: {
          uploadId: started.uploadId,
          offset: 3n,
          data: new Uint8Array(0),
          final: true,
          sha256: new Uint8Array(32),
        },
      })
      .then(
        () => "resolved",
        (e: unknown) => (e as { serverCode?: string }).serverCode,
      );
    expect(refused).toBe("InvalidRequest");
    const client = new S3Client({
      endpoint,
      forcePathStyle: true,
      region: "us-east-1",
      credentials,
    });
    const listed = await client.send(
      new ListObjectsV2Command({ Bucket: "blobs", Prefix: "relay/" }),
    );
    expect(listed.Contents ?? []).toHaveLength(1); // only the earlier test's blob
    client.destroy();
  });
});
