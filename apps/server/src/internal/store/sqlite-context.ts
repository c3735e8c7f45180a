import type Database from "better-sqlite3";
import type { DeviceRecord } from "./server-store.ts";
import { toServerError } from "./sqlite-errors.ts";

/** What every part of the SQLite store shares: the connection, the error guard, the clock. */
export interface SqliteContext {
  db: Database.Database;
  /** Runs a synchronous database call as a promise, with errors mapped to `ServerError`. */
  run: <T>(fn: () => T) => Promise<T>;
  /** The injected clock, for the few writes whose contract method takes no `now`. */
  now: () => number;
  /** The internal key of a device, or undefined if it does not exist. */
  devKey: (accountId: string, deviceId: number) => number | undefined;
  /** Cached device records of accounts (filled by `listDevices`, dropped by {@link forget}). */
  deviceLists: Map<string, DeviceRecord[]>;
  /** Drops what is cached about an account; every write to its devices calls it afterwards. */
  forget: (accountId: string) => void;
}

/** Accounts whose devices are cached at most; past it the caches start over. */
const CACHED_ACCOUNTS = 50_000;

/** Creates the shared context over an open, migrated connection. */
export function createSqliteContext(db: Database.Database, now: () => number): SqliteContext {
  const devStmt = db.prepare<[string, number], { dev: number }>(
    "SELECT dev FROM devices WHERE account_id = ? AND device_id = ?",
  );
  // The hot path (every submission and ack) looks devices up by account; the store is the only
  // writer of its file, so a cache that every device write invalidates stays exact. Only devices
  // that exist are cached, and a write invalidates even when its transaction rolls back.
  const devKeys = new Map<string, Map<number, number>>();
  const deviceLists = new Map<string, DeviceRecord[]>();
  return {
    db,
    now,
    deviceLists,
    forget: (accountId) => {
      devKeys.delete(accountId);
      deviceLists.delete(accountId);
    },
    run: <T>(fn: () => T): Promise<T> => {
      try {
        return Promise.resolve(fn());
      } catch (err) {
        return Promise.reject(toServerError(err, db));
      }
    },
    devKey: (accountId, deviceId) => {
      const cached = devKeys.get(accountId)?.get(deviceId);
      if (cached !== undefined) return cached;
      const dev = devStmt.get(accountId, deviceId)?.dev;
      if (dev === undefined) return undefined;
      if (devKeys.size >= CACHED_ACCOUNTS) devKeys.clear();
      let m = devKeys.get(accountId);
      if (!m) devKeys.set(accountId, (m = new Map<number, number>()));
      m.set(deviceId, dev);
      return dev;
    },
  };
}

/** A view of a blob column as a plain Uint8Array (better-sqlite3 gives each value its own buffer). */
export function bytes(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}
