import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { ServerError } from "../errors.ts";
import { startSqliteCheckpointer } from "./sqlite-checkpointer.ts";
import { createSqliteContext } from "./sqlite-context.ts";
import { createSqliteDirectory } from "./sqlite-directory.ts";
import { prepareKeyWriter } from "./sqlite-prekeys.ts";
import { createSqliteQueue } from "./sqlite-queue.ts";
import { openSqliteServerStore } from "./sqlite-server-store.ts";
import { SQLITE_SCHEMA_VERSION } from "./sqlite-schema.ts";
import { describeServerStoreContract } from "./store-contract.ts";

const dir = mkdtempSync(join(tmpdir(), "pairwise-server-store-"));
let files = 0;
const freshPath = () => join(dir, `store-${++files}.db`);
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describeServerStoreContract("SQLite", () =>
  Promise.resolve(openSqliteServerStore({ path: freshPath() })),
);

const T0 = 1_700_000_000_000;
const b = (n: number, fill = 1) => new Uint8Array(n).fill(fill);
const key = (id: number, size = 32) => ({ id, publicKey: b(size, id), signature: b(64, id) });

async function seed(path: string, accountId = "acct") {
  const store = openSqliteServerStore({ path });
  await store.createAccount({
    accountId,
    accountKey: b(33),
    signedDeviceList: b(8),
    deviceListTimestamp: 1,
    now: T0,
    primary: {
      deviceId: 1,
      keyIndex: 0,
      registrationId: 1,
      identityKey: b(33),
      signedDeviceIdentity: b(10),
      noiseKey: b(32, 7),
      name: "primary",
      platform: "test",
      keys: { signedPreKey: key(1), lastResortKyberPreKey: key(2), preKeys: [], kyberPreKeys: [] },
    },
  });
  return store;
}

describe("SQLite server store", () => {
  it("opens in WAL mode at the current schema version with either synchronous level", async () => {
    for (const synchronous of ["normal", "full"] as const) {
      const path = freshPath();
      const store = openSqliteServerStore({ path, synchronous });
      await store.ping();
      await store.close();
      // synchronous is a per-connection setting; journal mode and version live in the file.
      const db = new Database(path);
      expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
      expect(db.pragma("user_version", { simple: true })).toBe(SQLITE_SCHEMA_VERSION);
      expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
      db.close();
    }
  });

  it("keeps data and counters across reopening", async () => {
    const path = freshPath();
    let store = await seed(path);
    const slot = await store.reserveCompanion({
      accountId: "acct",
      maxCompanions: 4,
      now: T0,
      ttlMs: 1,
    });
    const { seqs } = await store.enqueue([{ accountId: "acct", deviceId: 1, envelope: b(5, 9) }], {
      now: T0,
      expiresAt: T0 + 1000,
    });
    await store.close();
    store = openSqliteServerStore({ path });
    expect(await store.getDevice("acct", 1)).toMatchObject({ name: "primary" });
    expect(await store.fetchQueue("acct", 1, 0, 10)).toEqual([
      { seq: seqs[0], envelope: b(5, 9), enqueuedAt: T0 },
    ]);
    // The expired reservation's id stays burnt after a restart.
    const next = await store.reserveCompanion({
      accountId: "acct",
      maxCompanions: 4,
      now: T0 + 5,
      ttlMs: 1,
    });
    expect(next.deviceId).toBe(slot.deviceId + 1);
    // AUTOINCREMENT: a seq is not reused after its message is acknowledged, even after restart.
    await store.ack("acct", 1, seqs);
    await store.close();
    store = openSqliteServerStore({ path });
    const again = await store.enqueue([{ accountId: "acct", deviceId: 1, envelope: b(1) }], {
      now: T0,
      expiresAt: T0 + 1000,
    });
    expect(again.seqs[0]).toBeGreaterThan(seqs[0] ?? Infinity);
    await store.close();
  });

  it("expires a backlog larger than one batch", async () => {
    const store = await seed(freshPath());
    const inserts = Array.from({ length: 4500 }, () => ({
      accountId: "acct",
      deviceId: 1,
      envelope: b(16),
    }));
    await store.enqueue(inserts, { now: T0, expiresAt: T0 + 1 });
    await store.enqueue(inserts.slice(0, 3), { now: T0, expiresAt: T0 + 100 });
    expect(await store.expire(T0 + 1)).toBe(4500);
    expect(await store.queueDepth()).toBe(3);
    await store.close();
  });

  it("expires interleaved messages and dedup keys, walking each table a batch at a time", async () => {
    const path = freshPath();
    const store = await seed(path);
    // Alternate expiries, so every batch of the walk holds rows to delete and rows to keep.
    await Promise.all(
      Array.from({ length: 4500 }, (_, i) =>
        store.enqueue([{ accountId: "acct", deviceId: 1, envelope: b(16) }], {
          now: T0,
          expiresAt: i % 2 === 0 ? T0 + 1 : T0 + 100,
          dedupKey: `key-${String(i).padStart(4, "0")}`,
        }),
      ),
    );
    expect(await store.expire(T0 + 1)).toBe(2250);
    expect(await store.queueDepth()).toBe(2250);
    const kept = await store.fetchQueue("acct", 1, 0, 5000);
    expect(kept.every((m, i) => i === 0 || m.seq > (kept[i - 1]?.seq ?? Infinity))).toBe(true);
    // An expired key can be used again; a live one still marks a duplicate.
    const again = (i: number) =>
      store.enqueue([{ accountId: "acct", deviceId: 1, envelope: b(16) }], {
        now: T0 + 2,
        expiresAt: T0 + 100,
        dedupKey: `key-${String(i).padStart(4, "0")}`,
      });
    expect((await again(0)).duplicate).toBe(false);
    expect((await again(1)).duplicate).toBe(true);
    await store.close();
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT count(*) AS n FROM dedup").get()).toEqual({ n: 2251 });
    expect(db.prepare("SELECT count(*) AS n FROM dedup WHERE expires_at <= ?").get(T0 + 1)).toEqual(
      { n: 0 },
    );
    db.close();
  });

  it("goes on walking for expired messages from where an earlier process stopped", async () => {
    const path = freshPath();
    const store = await seed(path);
    const inserts = Array.from({ length: 4500 }, () => ({
      accountId: "acct",
      deviceId: 1,
      envelope: b(16),
    }));
    const { seqs } = await store.enqueue(inserts, { now: T0, expiresAt: T0 + 1 });
    await store.close();
    // As if a process had walked the first 3,000 rows (while they were live) and then stopped.
    const db = new Database(path);
    db.prepare("INSERT INTO sweep_cursors (name, position) VALUES ('queue', ?)").run(seqs[2999]);
    db.close();
    const again = openSqliteServerStore({ path });
    expect(await again.expire(T0 + 1)).toBe(1500);
    // That walk reached the end: the next one starts over.
    expect(await again.expire(T0 + 1)).toBe(3000);
    expect(await again.queueDepth()).toBe(0);
    await again.close();
  });

  it("refuses a database written by a newer version, and a file that is not a database", () => {
    const path = freshPath();
    const db = new Database(path);
    db.pragma(`user_version = ${SQLITE_SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => openSqliteServerStore({ path })).toThrow(
      expect.objectContaining({ code: "Internal" }) as Error,
    );
    const junk = freshPath();
    writeFileSync(junk, Buffer.alloc(8192, 0x41));
    let err: unknown;
    try {
      openSqliteServerStore({ path: junk });
    } catch (e) {
      err = e;
    }
    expect(ServerError.is(err, "Unavailable")).toBe(true);
  });

  it("drops the dedup keys version 3 kept in the clear, and the walk's cursor among them", async () => {
    const path = freshPath();
    await openSqliteServerStore({ path }).close();
    const db = new Database(path);
    const insert = db.prepare("INSERT INTO dedup (key, expires_at) VALUES (?, ?)");
    insert.run("acct|1|0193a5b2-1c3d-7abc-8def-0123456789ab", T0 + 60_000);
    insert.run("fed|bob@example|2|m-1|acct", T0 + 60_000);
    const cursor = db.prepare("INSERT INTO sweep_cursors (name, position) VALUES (?, ?)");
    cursor.run("dedup", "acct|1|x");
    cursor.run("queue", 42);
    // As version 3 left it: migration 4 runs on opening.
    db.pragma("user_version = 3");
    db.close();
    await openSqliteServerStore({ path }).close();
    const after = new Database(path);
    expect(after.prepare("SELECT count(*) FROM dedup").pluck().get()).toBe(0);
    expect(after.prepare("SELECT name, position FROM sweep_cursors").all()).toEqual([
      { name: "queue", position: 42 },
    ]);
    after.close();
  });

  it("keeps invite tokens only as hashes and never blob bytes", async () => {
    const path = freshPath();
    const store = openSqliteServerStore({ path });
    const token = "invite-token-do-not-store-7f3a";
    await store.addInvite(token, T0);
    await store.close();
    expect(readFileSync(path).includes(token)).toBe(false);
    const db = new Database(path, { readonly: true });
    const columns = db.prepare("SELECT name FROM pragma_table_info('blobs')").all();
    expect(columns.map((c) => (c as { name: string }).name).sort()).toEqual([
      "blob_id",
      "created_at",
      "owner",
      "sha256",
      "size",
    ]);
    db.close();
  });

  it("maps errors to ServerError without values in the message", async () => {
    const store = await seed(freshPath());
    const noiseKey = b(32, 7);
    const err = await store
      .createAccount({
        accountId: "secret-account-name",
        accountKey: b(33),
        signedDeviceList: b(8),
        deviceListTimestamp: 1,
        now: T0,
        primary: {
          deviceId: 1,
          keyIndex: 0,
          registrationId: 1,
          identityKey: b(33),
          signedDeviceIdentity: b(10),
          noiseKey,
          name: "x",
          platform: "x",
          keys: {
            signedPreKey: key(1),
            lastResortKyberPreKey: key(2),
            preKeys: [],
            kyberPreKeys: [],
          },
        },
      })
      .catch((e: unknown) => e);
    expect(ServerError.is(err, "Conflict")).toBe(true);
    expect((err as Error).message).not.toContain("secret-account-name");
    expect((err as Error).message).toBe("Conflict: already exists");
    await store.close();
  });

  it("checkpoints the WAL on a worker thread, not on the writer", async () => {
    const path = freshPath();
    const store = await seed(path);
    const fileBytes = () => statSync(path).size;
    // Give the worker a moment to checkpoint what seeding wrote, then measure.
    await new Promise((r) => setTimeout(r, 400));
    const before = fileBytes();
    // About 2 MB of queued envelopes: far below the writer's own autocheckpoint (32,000 pages).
    for (let i = 0; i < 40; i++) {
      await store.enqueue(
        Array.from({ length: 10 }, () => ({
          accountId: "acct",
          deviceId: 1,
          envelope: b(5000, i),
        })),
        { now: T0, expiresAt: T0 + 1000 },
      );
    }
    expect(fileBytes()).toBe(before); // the writer did not checkpoint
    const end = Date.now() + 5000;
    while (fileBytes() < before + 1_500_000 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(fileBytes()).toBeGreaterThan(before + 1_500_000); // the worker did
    expect(await store.queueDepth()).toBe(400);
    await store.close();
    const db = new Database(path);
    expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
    expect((db.prepare("SELECT count(*) AS n FROM queue").get() as { n: number }).n).toBe(400);
    db.close();
  });
});

describe("SQLite WAL restarts", () => {
  it("holds the group commit while the checkpointer copies the WAL back, then starts the log over", async () => {
    const path = freshPath();
    const db = new Database(path);
    db.pragma("journal_mode = WAL");
    // Only the worker checkpoints; starting the log over cuts the file back to its first frames.
    db.pragma("wal_autocheckpoint = 0");
    db.pragma("journal_size_limit = 0");
    db.exec("CREATE TABLE t (v BLOB)");
    const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    const writer = { held: false };
    const holds: boolean[] = [];
    const checkpointer = startSqliteCheckpointer({
      path,
      synchronous: "NORMAL",
      restartFrames: 40,
      holdWrites: () => {
        writer.held = true;
        return () => {
          writer.held = false;
        };
      },
      onRestart: (_ms, complete) => holds.push(complete),
    });
    const walBytes = () => statSync(`${path}-wal`).size;
    let maxWal = 0;
    // A writer that commits every few ms unless held (as the queue's group commit does), until
    // a restart has been made (bounded: 10 s).
    const end = Date.now() + 10_000;
    let written = 0;
    while (holds.length === 0 && Date.now() < end) {
      if (!writer.held) {
        insert.run(b(3000, written++ % 250));
        maxWal = Math.max(maxWal, walBytes());
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(holds).toEqual([true]); // everything was copied back while held
    expect(writer.held).toBe(false);
    expect(maxWal).toBeGreaterThan(40 * 4096); // the log grew past the limit...
    // An idle log keeps its size until the next commit: the worker does not ask again for it.
    await new Promise((r) => setTimeout(r, 500));
    expect(holds).toHaveLength(1);
    insert.run(b(3000, 1));
    expect(walBytes()).toBeLessThan(10 * 4096); // ...and was written from its start again
    await checkpointer.stop();
    expect((db.prepare("SELECT count(*) AS n FROM t").get() as { n: number }).n).toBe(written + 1);
    expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
    db.close();
  });

  it("keeps held queue writes in call order and commits them on release or on a flush", async () => {
    const path = freshPath();
    await (await seed(path)).close();
    const db = new Database(path);
    const queue = createSqliteQueue(createSqliteContext(db, () => T0));
    const count = () => (db.prepare("SELECT count(*) AS n FROM queue").get() as { n: number }).n;
    const enqueue = (fill: number) =>
      queue.enqueue([{ accountId: "acct", deviceId: 1, envelope: b(10, fill) }], {
        now: T0,
        expiresAt: T0 + 60_000,
      });
    const release = queue.holdQueueWrites();
    let settled = 0;
    const first = enqueue(1).finally(() => settled++);
    const second = enqueue(2).finally(() => settled++);
    await new Promise((r) => setTimeout(r, 50));
    expect(settled).toBe(0);
    expect(count()).toBe(0); // nothing committed while held
    release();
    release(); // a second call changes nothing
    const [a, c] = await Promise.all([first, second]);
    expect(c.seqs[0]!).toBeGreaterThan(a.seqs[0]!);
    expect(count()).toBe(2);
    // Closing flushes whatever waits, held or not.
    const releaseAgain = queue.holdQueueWrites();
    const third = enqueue(3);
    queue.flushQueueWrites();
    expect(count()).toBe(3);
    expect((await third).seqs).toHaveLength(1);
    releaseAgain();
    db.close();
  });

  it("commits a touch in the group commit, held with it (a commit of its own escaped the hold)", async () => {
    const path = freshPath();
    await (await seed(path)).close();
    const db = new Database(path);
    const ctx = createSqliteContext(db, () => T0);
    const queue = createSqliteQueue(ctx);
    const directory = createSqliteDirectory(ctx, prepareKeyWriter(ctx), queue.groupWrite);
    const lastSeen = () =>
      (
        db
          .prepare("SELECT last_seen AS t FROM devices WHERE account_id = 'acct' AND device_id = 1")
          .get() as { t: number }
      ).t;
    const before = lastSeen();
    const release = queue.holdQueueWrites();
    const touched = directory.touchDevice("acct", 1, before + 1000);
    await new Promise((r) => setTimeout(r, 50));
    expect(lastSeen()).toBe(before); // held, not committed on its own
    // A device list cached meanwhile has the committed value, and is dropped by the touch.
    expect((await directory.listDevices("acct"))[0]?.lastSeen).toBe(before);
    release();
    await touched;
    expect(lastSeen()).toBe(before + 1000);
    expect((await directory.listDevices("acct"))[0]?.lastSeen).toBe(before + 1000);
    await expect(directory.touchDevice("acct", 1, Number.NaN)).rejects.toMatchObject({
      code: "InvalidRequest",
    });
    db.close();
  });
});
