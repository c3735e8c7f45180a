import { randomBytes } from "node:crypto";
import {
  mkdtemp,
  readFile,
  readdir,
  rename,
  rm,
  writeFile,
  copyFile,
  truncate,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createMemoryStore } from "@pairwise/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsProvider } from "../providers/fs.ts";
import { createBackup } from "./create-backup.ts";
import { BackupError } from "./errors.ts";
import {
  addPasskeySlot,
  createKeyring,
  createPasskeySalt,
  decodeKeyring,
  encodeKeyring,
  recoveryKeyOf,
  removeSlots,
  type BackupKeyring,
} from "./keyring.ts";
import { createStoreSink, selectDeviceRecords } from "./device-records.ts";
import type { BackupProvider } from "./provider.ts";
import type { BackupRecord } from "./records.ts";
import { listBackups, restoreBackup, type RestoreSink } from "./restore-backup.ts";
import { formatRecoveryKey, parseRecoveryKey } from "./recovery-key.ts";

function memorySink(): RestoreSink & {
  staged: BackupRecord[];
  committed: BackupRecord[] | undefined;
  aborted: boolean;
} {
  const sink = {
    staged: [] as BackupRecord[],
    committed: undefined as BackupRecord[] | undefined,
    aborted: false,
    put(r: BackupRecord) {
      sink.staged.push(r);
    },
    commit() {
      sink.committed = sink.staged;
    },
    abort() {
      sink.aborted = true;
      sink.staged = [];
    },
  };
  return sink;
}

/** ~600 KB of records: several 64 KiB chunks and, with 150 000-byte parts, four parts. */
function sampleRecords(): BackupRecord[] {
  const out: BackupRecord[] = [];
  for (let i = 0; i < 300; i++) {
    out.push({
      table: "app",
      key: `msg|alice|${String(i).padStart(16, "0")}|m${i}`,
      value: randomBytes(2000),
    });
  }
  out.push({ table: "contact-key", key: "bob", value: Uint8Array.of() });
  return out;
}

const PART = 150_000;
let dir: string;
let keyring: BackupKeyring;
let provider: BackupProvider;
const unlock = () => ({ recoveryKey: recoveryKeyOf(keyring) });

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "pw-backup-"));
  keyring = createKeyring();
  provider = createFsProvider({ dir });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function backupFiles(id: string): Promise<string[]> {
  return (await readdir(join(dir, "pairwise-backup", id))).sort();
}

async function expectRefused(
  code: string,
  options: Partial<Parameters<typeof restoreBackup>[0]> = {},
) {
  const sink = memorySink();
  const err: unknown = await restoreBackup({ provider, unlock: unlock(), sink, ...options }).catch(
    (e: unknown) => e,
  );
  expect(BackupError.is(err)).toBe(true);
  expect((err as BackupError).code).toBe(code);
  expect(sink.committed).toBeUndefined();
}

describe("recovery key", () => {
  it("shows 64 hex digits in 16 groups of 4 and reads them back tolerantly", () => {
    const key = randomBytes(32);
    const shown = formatRecoveryKey(key);
    expect(shown).toMatch(/^([0-9a-f]{4} ){15}[0-9a-f]{4}$/);
    const sloppy = `  ${shown.toUpperCase().replace(/ /g, "  ")}\n`;
    expect(Buffer.from(parseRecoveryKey(sloppy)).equals(key)).toBe(true);
    expect(Buffer.from(parseRecoveryKey(shown.replace(/ /g, "-"))).equals(key)).toBe(true);
  });

  it("refuses anything but 64 hex digits", () => {
    for (const bad of ["", "abcd", "g".repeat(64), "a".repeat(63), "a".repeat(65)]) {
      expect(() => parseRecoveryKey(bad)).toThrow(BackupError);
    }
  });
});

describe("keyring", () => {
  it("round-trips through its stored form and keeps the recovery slot", () => {
    const withPasskey = addPasskeySlot(keyring, {
      credentialId: randomBytes(16),
      salt: createPasskeySalt(),
      prfOutput: randomBytes(32),
    });
    const back = decodeKeyring(encodeKeyring(withPasskey));
    expect(Buffer.from(back.key).equals(keyring.key)).toBe(true);
    expect(back.slots.map((s) => s.kind)).toEqual(["recovery", "passkey"]);
    expect(removeSlots(back, { passkey: "all", password: true }).slots.map((s) => s.kind)).toEqual([
      "recovery",
    ]);
    expect(() => decodeKeyring("{}")).toThrow(BackupError);
  });
});

describe("backup and restore on fs", () => {
  it("round-trips records byte for byte across several parts, newest first in the list", async () => {
    const records = sampleRecords();
    const first = await createBackup({ provider, keyring, records, sequence: 1, partBytes: PART });
    expect(first.parts.length).toBe(5);
    const second = await createBackup({ provider, keyring, records, sequence: 2, partBytes: PART });
    const list = await listBackups({ provider });
    expect(list.map((b) => b.id)).toEqual([second.id, first.id]);
    expect(list.every((b) => b.complete)).toBe(true);

    const sink = memorySink();
    let adopted: BackupKeyring | undefined;
    const restored = await restoreBackup({
      provider,
      unlock: unlock(),
      sink,
      minSequence: 2,
      onKeyring: (k) => (adopted = k),
    });
    expect(restored.id).toBe(second.id);
    expect(adopted && recoveryKeyOf(adopted)).toBe(recoveryKeyOf(keyring));
    expect(sink.committed?.length).toBe(records.length);
    sink.committed?.forEach((r, i) => {
      const want = records[i] as BackupRecord;
      expect([r.table, r.key]).toEqual([want.table, want.key]);
      expect(Buffer.from(r.value).equals(want.value)).toBe(true);
    });
    // The stored bytes are ciphertext: no record value appears in any file.
    const probe = Buffer.from((records[0] as BackupRecord).value).subarray(0, 32);
    for (const file of await backupFiles(second.id)) {
      expect((await readFile(join(dir, "pairwise-backup", second.id, file))).includes(probe)).toBe(
        false,
      );
    }
  });

  it("backs up history, contacts and settings but never keys, and imports them on a new device", async () => {
    const old = createMemoryStore();
    const enc = new TextEncoder();
    old.apply([
      { table: "app", key: "msg|bob|0000000000000001|m1", value: enc.encode('{"text":"hi"}') },
      { table: "app", key: "msgid|m1", value: enc.encode("msg|bob|0000000000000001|m1") },
      { table: "app", key: "group|g1", value: enc.encode("{}") },
      { table: "app", key: "meta|server-url", value: enc.encode("ws://old") },
      { table: "app", key: "meta|noise-key", value: randomBytes(32) },
      { table: "app", key: "outbox|m1", value: enc.encode("{}") },
      { table: "contact-key", key: "bob", value: randomBytes(40) },
      { table: "session", key: "bob|1", value: randomBytes(100) },
      { table: "identity", key: "self", value: randomBytes(100) },
    ]);
    const picked = [...selectDeviceRecords(old)].map((r) => `${r.table}:${r.key}`);
    expect(picked.sort()).toEqual(
      [
        "app:group|g1",
        "app:meta|server-url",
        "app:msg|bob|0000000000000001|m1",
        "app:msgid|m1",
        "contact-key:bob",
      ].sort(),
    );
    await createBackup({ provider, keyring, records: selectDeviceRecords(old), sequence: 1 });

    const fresh = createMemoryStore();
    fresh.apply([{ table: "app", key: "meta|server-url", value: enc.encode("ws://new") }]);
    const sink = createStoreSink(fresh);
    await restoreBackup({ provider, unlock: unlock(), sink });
    expect(sink.written).toBe(4);
    expect(new TextDecoder().decode(fresh.get("app", "msg|bob|0000000000000001|m1"))).toBe(
      '{"text":"hi"}',
    );
    expect(new TextDecoder().decode(fresh.get("app", "meta|server-url"))).toBe("ws://new");
    expect(fresh.get("app", "meta|noise-key")).toBeUndefined();
    expect(fresh.count("session")).toBe(0);
  });

  it("refuses a wrong recovery key and restores nothing", async () => {
    await createBackup({ provider, keyring, records: sampleRecords(), sequence: 1 });
    await expectRefused("WrongKey", {
      unlock: { recoveryKey: formatRecoveryKey(randomBytes(32)) },
    });
    await expectRefused("InvalidArgument", { unlock: { recoveryKey: "1234" } });
  });
});

describe("tampering is refused with typed errors and nothing restored", () => {
  let id: string;
  let store: ReturnType<typeof createMemoryStore>;
  const partPath = (n: number) =>
    join(dir, "pairwise-backup", id, `part-${String(n).padStart(6, "0")}`);

  beforeEach(async () => {
    id = (
      await createBackup({
        provider,
        keyring,
        records: sampleRecords(),
        sequence: 1,
        partBytes: PART,
      })
    ).id;
    store = createMemoryStore();
  });

  async function expectStoreUntouched(code: string) {
    const sink = createStoreSink(store);
    const err: unknown = await restoreBackup({ provider, unlock: unlock(), sink }).catch(
      (e: unknown) => e,
    );
    expect(BackupError.is(err) && err.code).toBe(code);
    expect(store.count("app") + store.count("contact-key")).toBe(0);
  }

  it("a flipped byte in the last part", async () => {
    const bytes = await readFile(partPath(4));
    bytes[100] = (bytes[100] ?? 0) ^ 1;
    await writeFile(partPath(4), bytes);
    await expectStoreUntouched("Tampered");
  });

  it("a flipped byte in the manifest", async () => {
    const path = join(dir, "pairwise-backup", id, "manifest");
    const bytes = await readFile(path);
    bytes[bytes.length - 20] = (bytes[bytes.length - 20] ?? 0) ^ 0x80;
    await writeFile(path, bytes);
    await expectStoreUntouched("Tampered");
  });

  it("truncation of the last part, and a missing part", async () => {
    const { size } = await import("node:fs/promises").then((fs) => fs.stat(partPath(4)));
    await truncate(partPath(4), size - 17);
    await expectStoreUntouched("Tampered");
    await rm(partPath(4));
    await expectStoreUntouched("Incomplete");
  });

  it("reordered chunks inside a part, and reordered parts", async () => {
    const bytes = await readFile(partPath(1));
    const sealed = 65_536 + 16;
    const a = Buffer.from(bytes.subarray(0, sealed));
    bytes.copy(bytes, 0, sealed, 2 * sealed);
    a.copy(bytes, sealed);
    await writeFile(partPath(1), bytes);
    await expectStoreUntouched("Tampered");

    await rm(dir, { recursive: true });
    id = (
      await createBackup({
        provider,
        keyring,
        records: sampleRecords(),
        sequence: 1,
        partBytes: PART,
      })
    ).id;
    await rename(partPath(1), `${partPath(1)}.x`);
    await rename(partPath(2), partPath(1));
    await rename(`${partPath(1)}.x`, partPath(2));
    await expectStoreUntouched("Tampered");
  });

  it("a manifest swapped in from another backup", async () => {
    const other = await createBackup({ provider, keyring, records: [], sequence: 2 });
    await copyFile(
      join(dir, "pairwise-backup", other.id, "manifest"),
      join(dir, "pairwise-backup", id, "manifest"),
    );
    await rm(join(dir, "pairwise-backup", other.id), { recursive: true });
    await expectStoreUntouched("Tampered");
  });

  it("a rolled-back manifest: an older backup when a newer one was seen", async () => {
    const newer = await createBackup({ provider, keyring, records: sampleRecords(), sequence: 2 });
    // The provider drops the newer backup; restoring "latest" would silently go back in time.
    await rm(join(dir, "pairwise-backup", newer.id), { recursive: true });
    await expectRefused("RolledBack", { minSequence: newer.sequence });
    // And the old manifest renamed to pose as the newer id does not authenticate.
    await rename(join(dir, "pairwise-backup", id), join(dir, "pairwise-backup", newer.id));
    await expectRefused("Tampered", { minSequence: newer.sequence });
  });
});

describe("a connection cut mid-upload", () => {
  it("leaves no backup that restore accepts, and a retry succeeds", async () => {
    let cut = true;
    const cutting: BackupProvider = {
      ...provider,
      async put(name, body) {
        if (!cut || !name.endsWith("part-000002")) return provider.put(name, body);
        let sent = 0;
        await provider.put(
          name,
          (async function* () {
            for await (const chunk of body) {
              sent += chunk.length;
              if (sent > 50_000) throw new BackupError("ProviderFailure", "connection reset");
              yield chunk;
            }
          })(),
        );
      },
    };
    const records = sampleRecords();
    const err: unknown = await createBackup({
      provider: cutting,
      keyring,
      records,
      sequence: 1,
      partBytes: PART,
    }).catch((e: unknown) => e);
    expect(BackupError.is(err, "ProviderFailure")).toBe(true);
    expect((await listBackups({ provider })).filter((b) => b.complete)).toEqual([]);
    await expectRefused("NotFound");

    cut = false;
    const retry = await createBackup({
      provider: cutting,
      keyring,
      records,
      sequence: 1,
      partBytes: PART,
    });
    const sink = memorySink();
    expect((await restoreBackup({ provider, unlock: unlock(), sink })).id).toBe(retry.id);
    expect(sink.committed?.length).toBe(records.length);
  });
  it("fails when a part's put fails after its body was read, while the next part is stored", async () => {
    // Part 2's provider reads the whole body and only then fails (a flush or close failing),
    // by which time part 3 is already being stored.
    let startThird = () => {};
    const thirdStarted = new Promise<void>((resolve) => (startThird = resolve));
    const late: BackupProvider = {
      ...provider,
      async put(name, body) {
        if (name.endsWith("part-000003")) startThird();
        if (!name.endsWith("part-000002")) return provider.put(name, body);
        let read = 0;
        for await (const chunk of body) read += chunk.length;
        expect(read).toBeGreaterThan(0);
        await thirdStarted;
        throw new BackupError("ProviderFailure", "close failed");
      },
    };
    const err: unknown = await createBackup({
      provider: late,
      keyring,
      records: sampleRecords(),
      sequence: 1,
      partBytes: PART,
    }).catch((e: unknown) => e);
    expect(BackupError.is(err, "ProviderFailure")).toBe(true);
    expect(await listBackups({ provider })).toEqual([]);
    await expectRefused("NotFound");
  });
});
