import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { expectCode, tempDir } from "../../../test/support.ts";
import { CoreError } from "../errors.ts";
import type { KeyValueStore } from "./kv-store.ts";
import { createMemoryStore } from "./memory-store.ts";
import { openSqliteStore } from "./sqlite-store.ts";

const backends: Array<[string, () => KeyValueStore]> = [
  ["memory", () => createMemoryStore()],
  ["sqlite", () => openSqliteStore({ path: join(tempDir(), "kv.db") })],
  [
    "sqlite, low memory",
    () => openSqliteStore({ path: join(tempDir(), "kv.db"), lowMemory: true }),
  ],
  [
    "sqlite, group commit",
    () => openSqliteStore({ path: join(tempDir(), "kv.db"), commitDelayMs: 60_000 }),
  ],
];

describe.each(backends)("KeyValueStore contract: %s", (_name, open) => {
  it("gets, lists by prefix in key order, counts and deletes", () => {
    const s = open();
    s.apply([
      { table: "session", key: "bob|2", value: Uint8Array.of(2) },
      { table: "session", key: "bob|1", value: Uint8Array.of(1) },
      { table: "session", key: "bobby|1", value: Uint8Array.of(3) },
      { table: "identity", key: "bob|1", value: Uint8Array.of(9) },
    ]);
    expect(s.get("session", "bob|1")).toEqual(Uint8Array.of(1));
    expect(s.get("session", "nobody")).toBeUndefined();
    expect(s.list("session", "bob|").map(([k]) => k)).toEqual(["bob|1", "bob|2"]);
    expect(s.count("session")).toBe(3);
    s.apply([{ table: "session", key: "bob|1", value: null }]);
    expect(s.get("session", "bob|1")).toBeUndefined();
    expect(s.count("identity")).toBe(1);
    s.close();
  });

  it("copies on write: mutating a written buffer afterwards changes nothing stored", () => {
    const s = open();
    const v = Uint8Array.of(1, 2, 3);
    s.apply([{ table: "meta", key: "k", value: v }]);
    v[0] = 9;
    expect(s.get("meta", "k")).toEqual(Uint8Array.of(1, 2, 3));
    s.close();
  });
});

describe("SQLite store", () => {
  it("with small caches, serves far more cached records than it keeps, each current", () => {
    const store = openSqliteStore({ path: join(tempDir(), "small.db"), lowMemory: true });
    const value = (i: number, round: number) =>
      new TextEncoder().encode(`${String(i)}:${String(round)}`);
    for (let round = 0; round < 2; round++) {
      store.apply(
        Array.from({ length: 1000 }, (_, i) => ({
          table: "session" as const,
          key: `s${String(i)}`,
          value: value(i, round),
        })),
      );
      for (let i = 0; i < 1000; i++) {
        expect(new TextDecoder().decode(store.get("session", `s${String(i)}`))).toBe(
          `${String(i)}:${String(round)}`,
        );
      }
    }
    store.close();
  });

  it("persists across close and reopen, and a failed batch leaves nothing behind", () => {
    const path = join(tempDir(), "device.db");
    const s = openSqliteStore({ path });
    s.apply([{ table: "session", key: "a|1", value: Uint8Array.of(1) }]);
    // A write SQLite cannot bind fails the batch midway: all or nothing.
    const bad = [
      { table: "session" as const, key: "a|2", value: Uint8Array.of(2) },
      { table: "session" as const, key: "a|3", value: undefined as unknown as Uint8Array },
    ];
    expect(() => {
      s.apply(bad);
    }).toThrow(CoreError);
    expect(s.get("session", "a|2")).toBeUndefined();
    s.close();
    const again = openSqliteStore({ path });
    expect(again.get("session", "a|1")).toEqual(Uint8Array.of(1));
    expect(again.get("session", "a|2")).toBeUndefined();
    again.close();
  });

  it("belongs to one process: another opening the same file is refused, the owner goes on", () => {
    const path = join(tempDir(), "owned.db");
    const s = openSqliteStore({ path });
    s.apply([{ table: "session", key: "a|1", value: Uint8Array.of(1) }]);
    const other = spawnSync(
      process.execPath,
      [
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        `import { openSqliteStore } from ${JSON.stringify(join(import.meta.dirname, "sqlite-store.ts"))};
         try { openSqliteStore({ path: ${JSON.stringify(path)} }); console.log("opened"); }
         catch (e) { console.log(e.code, e.message.includes("in use by another process")); }`,
      ],
      { encoding: "utf8", timeout: 30_000 },
    );
    expect(other.stdout.trim()).toBe("DatabaseInUse true");
    s.apply([{ table: "session", key: "a|2", value: Uint8Array.of(2) }]);
    expect(s.get("session", "a|1")).toEqual(Uint8Array.of(1));
    s.close();
    // Closed, the file is free again.
    const again = openSqliteStore({ path });
    expect(again.get("session", "a|2")).toEqual(Uint8Array.of(2));
    again.close();
  });

  it("refuses a file that is not a database with StorageFailure", async () => {
    const { writeFileSync } = await import("node:fs");
    const path = join(tempDir(), "junk.db");
    writeFileSync(path, "this is not sqlite, just text that is long enough to be read as a header");
    expect(() => openSqliteStore({ path })).toThrow(CoreError);
  });
});

describe("SQLite store, group commit", () => {
  const one = (key: string, value: number) => ({
    table: "session" as const,
    key,
    value: Uint8Array.of(value),
  });
  /**
   * What the next run finds committed: the database and its WAL as they are on disk now, copied
   * and opened elsewhere (as after a crash; the store itself holds the file's exclusive lock).
   */
  const committed = (path: string, key: string): number | undefined => {
    const copy = join(tempDir(), "copy.db");
    copyFileSync(path, copy);
    if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, `${copy}-wal`);
    const db = new Database(copy);
    try {
      const row = db
        .prepare<[string], { value: Buffer }>("SELECT value FROM kv WHERE key = ?")
        .get(key);
      return row?.value[0];
    } finally {
      db.close();
    }
  };

  /** Runs test/fixtures/group-commit-crash.ts: one flushed batch, one open, then the end. */
  const runFixture = (path: string, end: "exit" | "kill") =>
    spawnSync(
      process.execPath,
      [
        "--import",
        "tsx",
        join(import.meta.dirname, "../../../test/fixtures/group-commit-crash.ts"),
        path,
        end,
      ],
      { encoding: "utf8", timeout: 30_000 },
    );

  it("holds batches in one open group until flush, reading them back meanwhile", () => {
    const path = join(tempDir(), "group.db");
    const s = openSqliteStore({ path, commitDelayMs: 60_000 });
    s.apply([one("a", 1)]);
    s.apply([one("b", 2), one("a", 3)]);
    expect(s.get("session", "a")).toEqual(Uint8Array.of(3));
    expect(s.count("session")).toBe(2);
    expect(committed(path, "a")).toBeUndefined();
    s.flush?.();
    expect(committed(path, "a")).toBe(3);
    expect(committed(path, "b")).toBe(2);
    s.close();
  });

  it("commits a group by itself once the delay has passed", async () => {
    const path = join(tempDir(), "timer.db");
    const s = openSqliteStore({ path, commitDelayMs: 5 });
    s.apply([one("a", 1)]);
    for (let i = 0; i < 200 && committed(path, "a") === undefined; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(committed(path, "a")).toBe(1);
    s.close();
  });

  it("commits the open group on close", () => {
    const path = join(tempDir(), "close.db");
    const s = openSqliteStore({ path, commitDelayMs: 60_000 });
    s.apply([one("a", 1)]);
    s.close();
    expect(committed(path, "a")).toBe(1);
  });

  it("rolls back only a failed batch; the rest of its group still commits", () => {
    const path = join(tempDir(), "partial.db");
    const s = openSqliteStore({ path, commitDelayMs: 60_000 });
    s.apply([one("before", 1)]);
    expect(() => {
      s.apply([
        one("half", 2),
        { table: "session", key: "bad", value: undefined as unknown as Uint8Array },
      ]);
    }).toThrow(CoreError);
    expect(s.get("session", "half")).toBeUndefined();
    s.apply([one("after", 3)]);
    s.flush?.();
    expect(committed(path, "before")).toBe(1);
    expect(committed(path, "half")).toBeUndefined();
    expect(committed(path, "after")).toBe(3);
    s.close();
  });

  it("notices a group SQLite rolled back by itself, and refuses to go on as if it stored", () => {
    const path = join(tempDir(), "rolled-back.db");
    openSqliteStore({ path }).close();
    // RAISE(ROLLBACK) ends the whole transaction, as SQLite does after an I/O error: the earlier
    // batch of the group ("a") goes with it, and "a" must not be served from the cache.
    const raw = new Database(path);
    raw.exec(`CREATE TRIGGER boom BEFORE INSERT ON kv WHEN NEW.key = 'boom'
      BEGIN SELECT RAISE(ROLLBACK, 'rolled back'); END;`);
    raw.close();
    const s = openSqliteStore({ path, commitDelayMs: 60_000 });
    s.apply([one("a", 1)]);
    expectCode(() => {
      s.apply([one("boom", 2)]);
    }, "StorageFailure");
    expectCode(() => s.get("session", "a"), "StorageFailure");
    expectCode(() => s.flush?.(), "StorageFailure");
    expectCode(() => s.close(), "StorageFailure");
    expect(committed(path, "a")).toBeUndefined();
  });

  it("commits the open group when the process exits normally", () => {
    const path = join(tempDir(), "exit.db");
    const child = runFixture(path, "exit");
    expect(child.status).toBe(0);
    expect(committed(path, "flushed")).toBe(1);
    expect(committed(path, "pending")).toBe(2);
  });

  it("loses only the uncommitted group when the process is killed", () => {
    const path = join(tempDir(), "crash.db");
    const child = runFixture(path, "kill");
    expect(child.signal).toBe("SIGKILL");
    expect(child.stdout).toBe("applied\n");
    const s = openSqliteStore({ path, commitDelayMs: 60_000 });
    expect(s.get("session", "flushed")).toEqual(Uint8Array.of(1));
    expect(s.get("session", "pending")).toBeUndefined();
    s.close();
  });

  it("after a commit that fails, refuses every call rather than serve writes it lost", () => {
    const path = join(tempDir(), "lost.db");
    openSqliteStore({ path }).close();
    // A deferred foreign key is checked at COMMIT: a batch writing key "orphan" makes the commit
    // of its whole group fail, as a full disk would.
    const raw = new Database(path);
    raw.exec(`CREATE TABLE parent (id INTEGER PRIMARY KEY);
      CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
      CREATE TRIGGER orphan AFTER INSERT ON kv WHEN NEW.key = 'orphan'
        BEGIN INSERT INTO child (p) VALUES (42); END;`);
    raw.close();
    const s = openSqliteStore({ path, commitDelayMs: 60_000 });
    s.apply([one("a", 1)]);
    s.apply([one("orphan", 2)]);
    expect(s.get("session", "a")).toEqual(Uint8Array.of(1));
    expectCode(() => s.flush?.(), "StorageFailure");
    expectCode(() => s.get("session", "a"), "StorageFailure");
    expectCode(() => {
      s.apply([one("b", 3)]);
    }, "StorageFailure");
    expectCode(() => s.close(), "StorageFailure"); // closes the file, and says what was lost
    expect(committed(path, "a")).toBeUndefined();
    expect(committed(path, "b")).toBeUndefined();
  });
});
