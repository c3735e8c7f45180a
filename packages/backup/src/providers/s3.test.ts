import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import S3rver from "s3rver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBackup } from "../internal/create-backup.ts";
import { startCuttingProxy, type CuttingProxy } from "../internal/cutting-proxy.ts";
import { BackupError } from "../internal/errors.ts";
import { createKeyring, recoveryKeyOf } from "../internal/keyring.ts";
import type { BackupRecord } from "../internal/records.ts";
import { listBackups, restoreBackup, type RestoreSink } from "../internal/restore-backup.ts";
import { createS3Provider } from "./s3.ts";

let dir: string;
let s3rver: S3rver;
let proxy: CuttingProxy;
let client: S3Client;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pw-s3-"));
  s3rver = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: "backups" }],
  });
  const { port } = await s3rver.run();
  proxy = await startCuttingProxy(port);
  client = new S3Client({
    endpoint: `http://127.0.0.1:${String(proxy.port)}`,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    requestChecksumCalculation: "WHEN_REQUIRED",
    maxAttempts: 1,
  });
});
afterAll(async () => {
  client.destroy();
  await proxy.close();
  await s3rver.close();
  await rm(dir, { recursive: true, force: true });
});

function collect(): RestoreSink & { records: BackupRecord[]; committed: boolean } {
  const sink = {
    records: [] as BackupRecord[],
    committed: false,
    put: (r: BackupRecord) => void sink.records.push(r),
    commit: () => void (sink.committed = true),
    abort: () => void (sink.records = []),
  };
  return sink;
}

/** 12 MiB of records: with 5 MiB S3 parts and 9 MiB backup parts, multipart uploads of 2 parts. */
function records(): BackupRecord[] {
  return Array.from({ length: 48 }, (_, i) => ({
    table: "app",
    key: `msg|c|${String(i)}`,
    value: randomBytes(256 * 1024),
  }));
}

describe("s3 provider against s3rver", () => {
  it("round-trips a multipart backup byte for byte", async () => {
    const provider = createS3Provider({
      client,
      bucket: "backups",
      prefix: "alice/",
      partBytes: 5 * 1024 * 1024,
    });
    const keyring = createKeyring();
    const input = records();
    const manifest = await createBackup({
      provider,
      keyring,
      records: input,
      sequence: 1,
      partBytes: 9 * 1024 * 1024,
    });
    expect(manifest.parts.length).toBe(2);
    const sink = collect();
    await restoreBackup({ provider, unlock: { recoveryKey: recoveryKeyOf(keyring) }, sink });
    expect(sink.committed).toBe(true);
    expect(sink.records.length).toBe(input.length);
    sink.records.forEach((r, i) => {
      expect(Buffer.from(r.value).equals((input[i] as BackupRecord).value)).toBe(true);
    });
    const err: unknown = await provider.get("pairwise-backup/none").catch((e: unknown) => e);
    expect(BackupError.is(err, "NotFound")).toBe(true);
  });

  it("retries a dropped part upload with backoff and completes", async () => {
    const provider = createS3Provider({
      client,
      bucket: "backups",
      prefix: "carol/",
      partBytes: 5 * 1024 * 1024,
      retry: { attempts: 4, baseDelayMs: 10 },
    });
    const keyring = createKeyring();
    const input = records();
    const before = proxy.cuts;
    proxy.cutAfter = 3 * 1024 * 1024;
    proxy.maxCuts = before + 2;
    try {
      await createBackup({ provider, keyring, records: input, sequence: 1 });
    } finally {
      proxy.cutAfter = undefined;
      proxy.maxCuts = Infinity;
    }
    expect(proxy.cuts).toBe(before + 2);
    const sink = collect();
    await restoreBackup({ provider, unlock: { recoveryKey: recoveryKeyOf(keyring) }, sink });
    expect(sink.records.length).toBe(input.length);
  });

  it("a connection cut mid-upload leaves no backup restore accepts; the retry succeeds", async () => {
    const provider = createS3Provider({
      client,
      bucket: "backups",
      prefix: "bob/",
      partBytes: 5 * 1024 * 1024,
      retry: { attempts: 2, baseDelayMs: 10 },
    });
    const keyring = createKeyring();
    const input = records();
    proxy.cutAfter = 2 * 1024 * 1024; // every connection dies 2 MiB into its request
    const err: unknown = await createBackup({
      provider,
      keyring,
      records: input,
      sequence: 1,
    }).catch((e: unknown) => e);
    expect(BackupError.is(err, "ProviderFailure")).toBe(true);
    expect(proxy.cuts).toBeGreaterThan(0);
    proxy.cutAfter = undefined;
    expect((await listBackups({ provider })).filter((b) => b.complete)).toEqual([]);
    const refused: unknown = await restoreBackup({
      provider,
      unlock: { recoveryKey: recoveryKeyOf(keyring) },
      sink: collect(),
    }).catch((e: unknown) => e);
    expect(BackupError.is(refused, "NotFound")).toBe(true);

    const manifest = await createBackup({ provider, keyring, records: input, sequence: 1 });
    const sink = collect();
    expect(
      (await restoreBackup({ provider, unlock: { recoveryKey: recoveryKeyOf(keyring) }, sink })).id,
    ).toBe(manifest.id);
    expect(sink.records.length).toBe(input.length);
  });
});
