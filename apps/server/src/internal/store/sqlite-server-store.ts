import Database from "better-sqlite3";
import type { Logger } from "pino";
import { ServerError } from "../errors.ts";
import type { ServerStore } from "./server-store.ts";
import { createSqliteBlobs } from "./sqlite-blobs.ts";
import {
  RESTART_FRAMES,
  startSqliteCheckpointer,
  type SqliteCheckpointer,
} from "./sqlite-checkpointer.ts";
import { createSqliteContext } from "./sqlite-context.ts";
import { createSqliteDirectory } from "./sqlite-directory.ts";
import { createSqliteGroups } from "./sqlite-groups.ts";
import { createSqliteInvites } from "./sqlite-invites.ts";
import { createSqlitePreKeys, prepareKeyWriter } from "./sqlite-prekeys.ts";
import { createSqliteQueue } from "./sqlite-queue.ts";
import { createSqliteVault } from "./sqlite-vault.ts";
import { migrate } from "./sqlite-schema.ts";

/** Options for {@link openSqliteServerStore}. */
export interface SqliteServerStoreOptions {
  /** The database file (created if missing). `":memory:"` for a throwaway database. */
  path: string;
  /**
   * `"normal"` (default): in WAL mode a commit survives a process crash (kill -9); only an OS
   * crash or power loss can lose the last commits. `"full"` fsyncs the WAL on every commit, so an
   * acknowledged submission survives power loss too, at the cost of one fsync per commit.
   */
  synchronous?: "normal" | "full";
  /** The clock for the few writes whose method takes no `now` (group timestamps). Defaults to `Date.now`. */
  now?: () => number;
  /** Receives one info line per schema migration. */
  logger?: Logger;
}

/**
 * Opens (creating and migrating if needed) the server's SQLite database through better-sqlite3
 * in WAL mode, as a {@link ServerStore}. Every multi-row method is one SQLite transaction; no
 * table is cached in memory. Blob bytes are not stored here, only their metadata.
 *
 * Throws `ServerError("Unavailable")` if the file cannot be opened or is not a database, and
 * `ServerError("Internal")` if it was written by a newer server version. Methods reject with
 * `ServerError`: "Conflict", "NotFound", "StaleDeviceList", "TooManyDevices", "InvalidRequest"
 * as documented on {@link ServerStore}, "Unavailable" when the database cannot serve (also after
 * `close`), "Internal" otherwise.
 */
export function openSqliteServerStore(options: SqliteServerStoreOptions): ServerStore {
  let db: Database.Database | undefined;
  try {
    db = new Database(options.path);
    db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${options.synchronous === "full" ? "FULL" : "NORMAL"}`);
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    // After a burst the WAL file is truncated back to this size at checkpoints.
    db.pragma("journal_size_limit = 67108864");
    // SQLite's default page cache (2 MiB) is kept on purpose. 64 MiB cut the server's CPU per
    // message by 2% and 4% (bench relay-ab, two runs), but in 4 pairs of relay bench runs taken
    // in turn with and without it, it had the lower ratio each time, and both of the 8 runs'
    // p99 misses (20.05 and 25.53 ms).
    migrate(db, options.logger);
  } catch (err) {
    if (db?.open) db.close();
    if (ServerError.is(err)) throw err;
    throw new ServerError("Unavailable", "cannot open the server database", { cause: err });
  }
  const ctx = createSqliteContext(db, options.now ?? Date.now);
  const { flushQueueWrites, holdQueueWrites, groupWrite, ...queueMethods } = createSqliteQueue(ctx);
  // Checkpoints run on a worker thread (see startSqliteCheckpointer), which also has the WAL
  // started over, with the group commit held while it copies back the rest; the writer's own
  // autocheckpoint stays as a fallback, should the worker fall behind or die, well past the
  // worker's restart point.
  let checkpointer: SqliteCheckpointer | undefined;
  if (!db.memory) {
    db.pragma(`wal_autocheckpoint = ${String(RESTART_FRAMES * 2)}`);
    checkpointer = startSqliteCheckpointer({
      path: db.name,
      synchronous: options.synchronous === "full" ? "FULL" : "NORMAL",
      holdWrites: holdQueueWrites,
      onRestart: (heldMs, complete) =>
        options.logger?.debug(
          { heldMs: Math.round(heldMs * 100) / 100, complete },
          "WAL copied back with the group commit held",
        ),
      onFailure: (code) =>
        options.logger?.warn({ code }, "background WAL checkpoint failed; the writer checkpoints"),
    });
  }
  const writeKeys = prepareKeyWriter(ctx);
  const ping = db.prepare("SELECT 1");
  const opened = db;

  return {
    ...createSqliteDirectory(ctx, writeKeys, groupWrite),
    ...createSqlitePreKeys(ctx, writeKeys),
    ...queueMethods,
    ...createSqliteGroups(ctx),
    ...createSqliteBlobs(ctx),
    ...createSqliteInvites(ctx),
    ...createSqliteVault(ctx),
    ping: () =>
      ctx.run(() => {
        ping.get();
      }),
    close: async () => {
      await ctx.run(() => {
        if (opened.open) flushQueueWrites();
      });
      await checkpointer?.stop();
      await ctx.run(() => {
        if (opened.open) opened.close();
      });
    },
  };
}
