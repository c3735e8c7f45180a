import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBackup } from "../internal/create-backup.ts";
import { BackupError } from "../internal/errors.ts";
import { startFakeGoogleDrive, type FakeGoogleDrive } from "../internal/fake-google-drive.ts";
import { createKeyring, recoveryKeyOf } from "../internal/keyring.ts";
import type { BackupRecord } from "../internal/records.ts";
import { listBackups, restoreBackup, type RestoreSink } from "../internal/restore-backup.ts";
import { createGoogleDriveProvider } from "./google-drive.ts";

const TOKEN = "ya29.test-token";
let drive: FakeGoogleDrive;
beforeAll(async () => {
  drive = await startFakeGoogleDrive(TOKEN);
});
afterAll(async () => {
  await drive.close();
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
  Array.from({ length: 40 }, (_, i) => ({
    table: "app",
    key: `msg|d|${String(i)}`,
    value: randomBytes(50_000),
  }));

const provider = (
  retry = { attempts: 4, baseDelayMs: 5 },
  token = TOKEN,
  chunkBytes = 256 * 1024,
) =>
  createGoogleDriveProvider({
    getAccessToken: () => token,
    baseUrl: drive.url,
    chunkBytes,
    retry,
  });

describe("google-drive provider against a local Drive v3 fake", () => {
  it("round-trips a backup through resumable uploads in 256 KiB chunks", async () => {
    const p = provider();
    const keyring = createKeyring();
    const input = records();
    const manifest = await createBackup({
      provider: p,
      keyring,
      records: input,
      sequence: 1,
      partBytes: 1024 * 1024,
    });
    expect(manifest.parts.length).toBe(3); // parts of whole 64 KiB chunks: 15 per MiB
    const sink = collect();
    await restoreBackup({ provider: p, unlock: { recoveryKey: recoveryKeyOf(keyring) }, sink });
    expect(sink.records.map((r) => Buffer.from(r.value).toString("hex"))).toEqual(
      input.map((r) => Buffer.from(r.value).toString("hex")),
    );
    expect(drive.refusals).toEqual([]);
    // Listing pages through Drive's nextPageToken (the fake hands out 3 files a page).
    expect((await p.list("pairwise-backup/")).length).toBe(4); // 3 parts and the manifest
  });

  it("resumes from the offset Drive confirms after dropped chunk requests", async () => {
    // 1 MiB chunks: the fake keeps the first 512 KiB of a cut one, so the client must resume
    // mid-chunk from the offset Drive reports.
    const p = provider(undefined, TOKEN, 1024 * 1024);
    const keyring = createKeyring();
    const input = records();
    drive.cutUploads = 3;
    await createBackup({
      provider: p,
      keyring,
      records: input,
      sequence: 2,
      partBytes: 4 * 1024 * 1024,
    });
    expect(drive.cutUploads).toBe(0);
    const sink = collect();
    await restoreBackup({
      provider: p,
      unlock: { recoveryKey: recoveryKeyOf(keyring) },
      sink,
      minSequence: 2,
    });
    expect(sink.records.length).toBe(input.length);
    expect(
      Buffer.from(sink.records[39]?.value ?? []).equals((input[39] as BackupRecord).value),
    ).toBe(true);
  });

  it("a connection cut mid-upload for good leaves no backup restore accepts; the retry succeeds", async () => {
    const p = provider({ attempts: 2, baseDelayMs: 5 });
    const before = (await listBackups({ provider: p })).filter((b) => b.complete).length;
    const keyring = createKeyring();
    drive.cutUploads = 1000;
    const err: unknown = await createBackup({
      provider: p,
      keyring,
      records: records(),
      sequence: 3,
    }).catch((e: unknown) => e);
    drive.cutUploads = 0;
    expect(BackupError.is(err, "ProviderFailure")).toBe(true);
    expect((await listBackups({ provider: p })).filter((b) => b.complete).length).toBe(before);
    const refused: unknown = await restoreBackup({
      provider: p,
      unlock: { recoveryKey: recoveryKeyOf(keyring) },
      sink: collect(),
      minSequence: 3,
    }).catch((e: unknown) => e);
    // The newest complete backup is an older one (of another keyring): never the cut one.
    expect(BackupError.is(refused) && ["WrongKey", "RolledBack"].includes(refused.code)).toBe(true);
    const manifest = await createBackup({ provider: p, keyring, records: records(), sequence: 3 });
    const sink = collect();
    const restored = await restoreBackup({
      provider: p,
      unlock: { recoveryKey: recoveryKeyOf(keyring) },
      sink,
    });
    expect(restored.id).toBe(manifest.id);
  });

  it("refuses without a valid token, and the fake enforces appDataFolder", async () => {
    const err: unknown = await provider({ attempts: 1, baseDelayMs: 1 }, "wrong")
      .list("x")
      .catch((e: unknown) => e);
    expect(BackupError.is(err, "ProviderFailure")).toBe(true);
    const res = await fetch(`${drive.url}/upload/drive/v3/files?uploadType=resumable`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "x", parents: ["root"] }),
    });
    expect(res.status).toBe(403);
    expect(drive.refusals).toContain("appDataFolder scope only");
  });
});
