import Database from "better-sqlite3";
import { CoreError } from "../errors.ts";
import type { KeyValueStore, StoreTable, StoreWrite } from "./kv-store.ts";

/** Options for {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /** Database file; one file per device. `":memory:"` for a throwaway database. */
  path: string;
  /**
   * `"full"` fsyncs every commit; `"normal"` (default) is WAL's usual setting: a commit survives
   * a process crash (kill -9); only an OS crash or power loss can lose the last commits.
   */
  synchronous?: "full" | "normal";
  /**
   * For one device among many in a process (a bot host): SQLite's page cache is bounded to
   * 256 KiB instead of 2 MiB, pages are read rather than memory-mapped (mapped pages count
   * against the process), and at most 256 session/identity records are kept decoded in memory
   * instead of 4096. Idle devices then cost little; busy ones read a little more from the file.
   */
  lowMemory?: boolean;
  /**
   * Group commit: when set, `apply` writes each batch atomically (a savepoint) into an open
   * transaction that commits this many ms after its first batch, at `flush()` or `close()`, or
   * when the process exits normally, whichever comes first. Many batches then share one commit,
   * and a batch not yet committed is lost in a crash, exactly as if the crash had come before
   * it. So the caller must `flush()` before anything that depends on those batches leaves the
   * process (the client does it before every frame it sends). A group lost to a failed commit,
   * or rolled back by SQLite itself, leaves the store refusing every call, `close()` included
   * (`CoreError("StorageFailure")`): reopen it, as after a crash. Unset (the default), every
   * `apply` commits before it returns.
   */
  commitDelayMs?: number;
}

const SCHEMA_VERSION = 1;

/**
 * The open groups of every grouped store in the process, committed when it exits normally (the
 * end of the program, `process.exit`): only a crash, or a signal that kills the process, loses
 * a group.
 */
const groupedStores = new Set<() => void>();
let exitHooked = false;
function commitGroupsAtExit(commit: () => void): void {
  groupedStores.add(commit);
  if (exitHooked) return;
  exitHooked = true;
  process.on("exit", () => {
    for (const c of groupedStores) {
      try {
        c();
      } catch {
        // nothing left to report to at exit; the next open finds the last committed state
      }
    }
  });
}
const CACHE_ENTRIES = 4096;
const LOW_MEMORY_CACHE_ENTRIES = 256;

/**
 * Opens (creating if needed) a device's SQLite database through better-sqlite3, in WAL mode, as
 * a {@link KeyValueStore}. Every `apply` is one SQLite transaction, so a crash never leaves a
 * half-updated session. Throws `CoreError("StorageFailure")` if the file can't be opened or was
 * written by a newer schema.
 */
export function openSqliteStore(options: SqliteStoreOptions): KeyValueStore {
  let db: Database.Database;
  let opening: Database.Database | undefined;
  try {
    // The exclusive lock below is held as long as its process runs, so waiting better-sqlite3's
    // default 5 s for it (synchronously: the event loop stalls) would not get it; a short wait
    // covers a process that is just exiting.
    db = opening = new Database(options.path, { timeout: 100 });
    // One process owns a device's database (the read cache below relies on it): the exclusive
    // lock, taken before anything reads the file, makes that a rule — another process opening
    // the same home gets "DatabaseInUse" instead of a shared file — and keeps WAL's index in
    // this process's memory: no shared-memory file and no file-lock calls per transaction (six
    // fcntl calls per commit before, a sixth of a message's cost in the core benchmark).
    db.pragma("locking_mode = EXCLUSIVE");
    // Session records reach ~4.3 KiB (PQXDH and the post-quantum ratchet state): a rowid table
    // (not WITHOUT ROWID) keeps most of such a row on its leaf page. page_size only takes effect
    // on a new database.
    db.pragma("page_size = 4096");
    db.pragma("journal_mode = WAL");
    db.pragma(`mmap_size = ${options.lowMemory ? 0 : 67_108_864}`);
    if (options.lowMemory) db.pragma("cache_size = -256");
    db.pragma(`synchronous = ${options.synchronous === "full" ? "FULL" : "NORMAL"}`);
    db.pragma("foreign_keys = ON");
    const version = db.pragma("user_version", { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      db.close();
      throw new CoreError("StorageFailure", "device database was written by a newer version");
    }
    db.exec(`CREATE TABLE IF NOT EXISTS kv (
      tbl TEXT NOT NULL,
      key TEXT NOT NULL,
      value BLOB NOT NULL,
      PRIMARY KEY (tbl, key)
    )`);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  } catch (cause) {
    if (CoreError.is(cause)) throw cause;
    if (opening?.open) opening.close();
    if ((cause as { code?: unknown }).code === "SQLITE_BUSY") {
      throw new CoreError("DatabaseInUse", "device database is in use by another process", {
        cause,
      });
    }
    throw new CoreError("StorageFailure", "cannot open device database", { cause });
  }

  const getStmt = db.prepare<[string, string], { value: Buffer }>(
    "SELECT value FROM kv WHERE tbl = ? AND key = ?",
  );
  const listAll = db.prepare<[string], { key: string; value: Buffer }>(
    "SELECT key, value FROM kv WHERE tbl = ? ORDER BY key",
  );
  const listPrefix = db.prepare<[string, string, string], { key: string; value: Buffer }>(
    "SELECT key, value FROM kv WHERE tbl = ? AND key >= ? AND key < ? ORDER BY key",
  );
  const countStmt = db.prepare<[string], { n: number }>(
    "SELECT count(*) AS n FROM kv WHERE tbl = ?",
  );
  const putStmt = db.prepare<[string, string, Uint8Array]>(
    "INSERT INTO kv (tbl, key, value) VALUES (?, ?, ?) ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value",
  );
  const delStmt = db.prepare<[string, string]>("DELETE FROM kv WHERE tbl = ? AND key = ?");
  const writeAll = (writes: readonly StoreWrite[]) => {
    for (const w of writes) {
      if (w.value === null) delStmt.run(w.table, w.key);
      else putStmt.run(w.table, w.key, w.value);
    }
  };
  const applyAll = db.transaction(writeAll);
  // Transaction control on the hot path as prepared statements (db.exec parses its SQL anew on
  // every call).
  const beginStmt = db.prepare("BEGIN IMMEDIATE");
  const commitStmt = db.prepare("COMMIT");
  const savepointStmt = db.prepare("SAVEPOINT batch");
  const releaseStmt = db.prepare("RELEASE batch");
  const writeFailed = (cause: unknown) =>
    new CoreError("StorageFailure", "device database write failed", { cause });
  const bytes = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

  // Write-through read cache for the per-message hot rows (sessions, identities, meta). The
  // database file belongs to one device process, so nothing else changes rows under us; the
  // cache is updated only after a batch is written (with group commit, a lost group clears it).
  const cacheEntries = options.lowMemory ? LOW_MEMORY_CACHE_ENTRIES : CACHE_ENTRIES;
  const cache = new Map<string, Uint8Array | null>();
  const cached = (table: StoreTable) =>
    table === "session" || table === "identity" || table === "meta";
  const remember = (k: string, v: Uint8Array | null) => {
    if (cache.size >= cacheEntries) cache.delete(cache.keys().next().value as string);
    cache.set(k, v);
  };

  // Group commit (commitDelayMs): batches since the last commit, lost in a crash until `flush`.
  const commitDelayMs = options.commitDelayMs;
  let commitTimer: NodeJS.Timeout | undefined;
  /** Whether this store began a transaction (a group) that it has not ended yet. */
  let groupOpen = false;
  /** Set once a group of batches was lost: the store then refuses all calls. */
  let lost: { cause: unknown } | undefined;
  const lostError = () =>
    new CoreError("StorageFailure", "device database lost uncommitted writes; reopen it", {
      cause: lost?.cause,
    });
  const loseGroup = (cause: unknown) => {
    lost = { cause };
    groupOpen = false;
    cache.clear();
    clearTimeout(commitTimer);
    commitTimer = undefined;
    if (db.inTransaction) {
      try {
        db.exec("ROLLBACK");
      } catch {
        // the transaction is gone either way
      }
    }
  };
  const usable = () => {
    // SQLite rolls a transaction back by itself after some errors (I/O, a full disk), on any
    // statement: the open group is then gone, and its callers were told their batches stored.
    if (!lost && groupOpen && !db.inTransaction)
      loseGroup(new Error("the open transaction was rolled back"));
    if (lost) throw lostError();
  };
  const commitGroup = () => {
    clearTimeout(commitTimer);
    commitTimer = undefined;
    if (!groupOpen) return;
    try {
      commitStmt.run();
      groupOpen = false;
    } catch (cause) {
      loseGroup(cause);
      throw lostError();
    }
  };
  const applyGrouped = (writes: readonly StoreWrite[]) => {
    if (!groupOpen) {
      try {
        beginStmt.run();
      } catch (cause) {
        throw writeFailed(cause);
      }
      groupOpen = true;
      commitTimer = setTimeout(() => {
        commitTimer = undefined;
        try {
          commitGroup();
        } catch {
          // recorded in `lost`: the next call on the store reports it
        }
      }, commitDelayMs);
      commitTimer.unref();
    }
    // Each batch in a savepoint of its own: a failed one is undone alone. If it cannot be undone
    // (or SQLite already rolled back the whole transaction), the group is lost.
    try {
      savepointStmt.run();
      writeAll(writes);
      releaseStmt.run();
    } catch (cause) {
      try {
        db.exec("ROLLBACK TO batch");
        db.exec("RELEASE batch");
      } catch (undo) {
        loseGroup(undo);
        throw lostError();
      }
      throw writeFailed(cause);
    }
  };
  // A lost group leaves nothing open, and close() unregisters first: commitGroup alone will do.
  if (commitDelayMs !== undefined) commitGroupsAtExit(commitGroup);

  return {
    get(table: StoreTable, key: string) {
      usable();
      if (cached(table)) {
        const k = `${table}\n${key}`;
        const hit = cache.get(k);
        if (hit !== undefined) return hit === null ? undefined : hit;
        const row = getStmt.get(table, key);
        const value = row ? bytes(row.value) : null;
        remember(k, value);
        return value ?? undefined;
      }
      const row = getStmt.get(table, key);
      return row ? bytes(row.value) : undefined;
    },
    list(table: StoreTable, prefix = "") {
      usable();
      const rows =
        prefix === "" ? listAll.all(table) : listPrefix.all(table, prefix, prefix + "\uffff");
      return rows.map((r) => [r.key, bytes(r.value)]);
    },
    count(table: StoreTable) {
      usable();
      return countStmt.get(table)?.n ?? 0;
    },
    apply(writes) {
      usable();
      if (writes.length === 0) return;
      if (commitDelayMs !== undefined) applyGrouped(writes);
      else {
        try {
          applyAll(writes);
        } catch (cause) {
          throw writeFailed(cause);
        }
      }
      for (const w of writes)
        if (cached(w.table)) remember(`${w.table}\n${w.key}`, w.value && w.value.slice());
    },
    flush() {
      usable();
      commitGroup();
    },
    close() {
      groupedStores.delete(commitGroup);
      try {
        usable();
        commitGroup();
      } finally {
        clearTimeout(commitTimer);
        if (db.open) db.close();
      }
    },
  };
}
