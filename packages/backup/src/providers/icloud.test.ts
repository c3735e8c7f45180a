import { generateKeyPairSync, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBackup } from "../internal/create-backup.ts";
import { BackupError } from "../internal/errors.ts";
import { startFakeCloudKit, type FakeCloudKit } from "../internal/fake-cloudkit.ts";
import { createKeyring, recoveryKeyOf } from "../internal/keyring.ts";
import type { BackupRecord } from "../internal/records.ts";
import { listBackups, restoreBackup, type RestoreSink } from "../internal/restore-backup.ts";
import { createICloudProvider } from "./icloud.ts";

const CONTAINER = "iCloud.dev.pairwise.test";
const ASSET = 1024 * 1024;
const keys = generateKeyPairSync("ec", { namedCurve: "P-256" });
let ck: FakeCloudKit;
beforeAll(async () => {
  ck = await startFakeCloudKit({
    keyId: "key-1",
    publicKey: keys.publicKey,
    container: CONTAINER,
    maxAssetBytes: ASSET,
  });
});
afterAll(async () => {
  await ck.close();
});

const provider = (
  over: { privateKey?: typeof keys.privateKey; maxAssetBytes?: number; attempts?: number } = {},
) =>
  createICloudProvider({
    container: CONTAINER,
    environment: "development",
    keyId: "key-1",
    privateKey: over.privateKey ?? keys.privateKey,
    baseUrl: ck.url,
    maxAssetBytes: over.maxAssetBytes ?? ASSET,
    retry: { attempts: over.attempts ?? 3, baseDelayMs: 5 },
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
const records = (): BackupRecord[] =>
  Array.from({ length: 30 }, (_, i) => ({
    table: "app",
    key: `msg|e|${String(i)}`,
    value: randomBytes(100_000),
  }));

describe("icloud provider against a local CloudKit Web Services fake", () => {
  it("round-trips a backup that spans several assets, every request signed", async () => {
    const p = provider();
    const keyring = createKeyring();
    const input = records();
    const manifest = await createBackup({ provider: p, keyring, records: input, sequence: 1 });
    expect(manifest.parts.length).toBe(4); // 3 MB in 1 MiB assets of whole chunks (15 each)
    const sink = collect();
    await restoreBackup({ provider: p, unlock: { recoveryKey: recoveryKeyOf(keyring) }, sink });
    expect(sink.records.map((r) => Buffer.from(r.value).toString("base64"))).toEqual(
      input.map((r) => Buffer.from(r.value).toString("base64")),
    );
    expect(ck.refusals).toEqual([]);
    expect((await p.list("pairwise-backup/")).length).toBe(5); // 4 parts and the manifest, paged 2 at a time
  });

  it("retries a cut asset upload with a fresh upload URL", async () => {
    const p = provider();
    const keyring = createKeyring();
    ck.cutUploads = 2;
    await createBackup({ provider: p, keyring, records: records(), sequence: 2 });
    expect(ck.cutUploads).toBe(0);
    const sink = collect();
    await restoreBackup({
      provider: p,
      unlock: { recoveryKey: recoveryKeyOf(keyring) },
      sink,
      minSequence: 2,
    });
    expect(sink.records.length).toBe(30);
  });

  it("a connection cut mid-upload for good leaves no backup restore accepts; the retry succeeds", async () => {
    const p = provider({ attempts: 2 });
    const keyring = createKeyring();
    const complete = async () =>
      (await listBackups({ provider: p })).filter((b) => b.complete).length;
    const before = await complete();
    ck.cutUploads = 1000;
    const err: unknown = await createBackup({
      provider: p,
      keyring,
      records: records(),
      sequence: 3,
    }).catch((e: unknown) => e);
    ck.cutUploads = 0;
    expect(BackupError.is(err, "ProviderFailure")).toBe(true);
    expect(await complete()).toBe(before);
    const manifest = await createBackup({ provider: p, keyring, records: records(), sequence: 3 });
    const sink = collect();
    expect(
      (await restoreBackup({ provider: p, unlock: { recoveryKey: recoveryKeyOf(keyring) }, sink }))
        .id,
    ).toBe(manifest.id);
  });

  it("the fake refuses a foreign key's signature and an over-size asset", async () => {
    const other = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const err: unknown = await provider({ privateKey: other.privateKey, attempts: 1 })
      .list("x")
      .catch((e: unknown) => e);
    expect(BackupError.is(err, "ProviderFailure")).toBe(true);
    expect(ck.refusals).toContain("bad signature");
    const big: unknown = await provider({ maxAssetBytes: 2 * ASSET, attempts: 1 })
      .put("pairwise-backup/big", Readable.from([randomBytes(ASSET + 1)]))
      .catch((e: unknown) => e);
    expect(BackupError.is(big, "ProviderFailure")).toBe(true);
    expect(ck.refusals).toContain("asset too large");
  });
});
