import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { ServerError } from "../errors.ts";
import type { QueueInsert, QueuedMessage, ServerStore } from "./server-store.ts";
import { bytes, type SqliteContext } from "./sqlite-context.ts";
import { toServerError } from "./sqlite-errors.ts";

type QueueMethods = Pick<
  ServerStore,
  "enqueue" | "fetchQueue" | "ack" | "expire" | "queueDepth"
> & {
  /** Commits what is waiting for the group commit now (before closing the database). */
  flushQueueWrites: () => void;
  /**
   * Stops group commits until the returned release is called (the checkpointer restarting the
   * WAL); writes made meanwhile wait, in order, and are committed after it.
   */
  holdQueueWrites: () => () => void;
  /**
   * Runs `apply` inside the next group commit (held with the queue's writes), settling after
   * it: for other small writes that may be batched (`touchDevice`). `apply` must check before it
   * writes: only a `ServerError` leaves the rest of the group standing.
   */
  groupWrite: <T>(apply: () => T) => Promise<T>;
};

/** A submission, an acknowledgement or another group write (a touch) waiting for the group commit. */
interface PendingWrite {
  apply(): unknown;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** Writes committed together at most; a larger burst is split over several transactions. */
const GROUP_COMMIT_MAX = 1024;

/**
 * Acknowledgements of up to this many seqs delete row by row; larger ones in one statement,
 * which saves a call into SQLite per seq (about 0.4 µs a message with batches of 100).
 */
const ACK_ONE_BY_ONE = 4;

/**
 * Rows `expire` looks at per transaction. SQLite has one writer: a short transaction followed by
 * a turn of the event loop keeps a large backlog from blocking submissions for seconds.
 */
const EXPIRE_BATCH = 2000;

/**
 * Rows of each table one `expire` call looks at, at most; a larger table is walked on from where
 * the call stopped by the next ones (housekeeping runs every minute).
 */
const EXPIRE_SCAN_MAX = 200_000;

/**
 * The per-device message queues and the submission dedup keys of the SQLite store.
 *
 * Group commit: `enqueue` and `ack` calls (and other small writes given to `groupWrite`: device
 * touches) made in the same turn of the event loop are applied in call order inside one
 * transaction, committed at the end of the turn (`setImmediate`); each promise settles only after
 * that commit. Each call stays atomic on its own: one that fails its checks ("NotFound") writes
 * nothing and does not disturb the others; a database failure fails every call of the batch and
 * commits none of them. A burst of submissions from many connections then costs one commit
 * instead of one each.
 */
export function createSqliteQueue(ctx: SqliteContext): QueueMethods {
  const { db, run } = ctx;
  const q = {
    // A live key makes this a no-op (changes = 0); an expired one that `expire` has not swept
    // yet is taken over, so an old key never blocks a new message.
    claimDedup: db.prepare<[string, number, number]>(
      `INSERT INTO dedup (key, expires_at) VALUES (?, ?)
       ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE dedup.expires_at <= ?`,
    ),
    insert: db.prepare<[number, Uint8Array, number, number]>(
      "INSERT INTO queue (dev, envelope, enqueued_at, expires_at) VALUES (?, ?, ?, ?)",
    ),
    fetch: db.prepare<
      [number, number, number, number],
      { seq: number; envelope: Buffer; enqueued_at: number }
    >(
      "SELECT seq, envelope, enqueued_at FROM queue WHERE dev = ? AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?",
    ),
    ackOne: db.prepare<[number, number]>("DELETE FROM queue WHERE seq = ? AND dev = ?"),
    // A batch of seqs (a JSON array) in one statement: each is still an index lookup.
    ackMany: db.prepare<[number, string]>(
      "DELETE FROM queue WHERE dev = ? AND seq IN (SELECT value FROM json_each(?))",
    ),
    // Expiry has no index of its own (each would cost every message another b-tree write): it
    // walks each table in key order, a range of EXPIRE_BATCH rows per transaction.
    queueRangeEnd: db.prepare<[number, number], { hi: number | null }>(
      "SELECT max(seq) AS hi FROM (SELECT seq FROM queue WHERE seq > ? ORDER BY seq LIMIT ?)",
    ),
    expireQueueRange: db.prepare<[number, number, number]>(
      "DELETE FROM queue WHERE seq > ? AND seq <= ? AND expires_at <= ?",
    ),
    dedupRangeEnd: db.prepare<[string, number], { hi: string | null }>(
      "SELECT max(key) AS hi FROM (SELECT key FROM dedup WHERE key > ? ORDER BY key LIMIT ?)",
    ),
    expireDedupRange: db.prepare<[string, string, number]>(
      "DELETE FROM dedup WHERE key > ? AND key <= ? AND expires_at <= ?",
    ),
    getCursor: db.prepare<[string], { position: number | string }>(
      "SELECT position FROM sweep_cursors WHERE name = ?",
    ),
    setCursor: db.prepare<[string, number | string]>(
      "INSERT OR REPLACE INTO sweep_cursors (name, position) VALUES (?, ?)",
    ),
    expireReservations: db.prepare<[number]>("DELETE FROM reservations WHERE expires_at <= ?"),
    depth: db.prepare<[], { n: number }>("SELECT count(*) AS n FROM queue"),
  };

  // Runs inside the group transaction. Every check comes before the first write, so a call that
  // fails its checks leaves nothing behind without needing a savepoint.
  const enqueueOne = (
    inserts: QueueInsert[],
    options: { now: number; expiresAt: number; dedupKey?: string },
  ) => {
    const { now, expiresAt, dedupKey } = options;
    const rows: Array<{ dev: number; envelope: Uint8Array }> = [];
    for (const ins of inserts) {
      const dev = ctx.devKey(ins.accountId, ins.deviceId);
      if (dev === undefined) throw new ServerError("NotFound", "device not found");
      rows.push({ dev, envelope: ins.envelope });
    }
    if (dedupKey !== undefined && q.claimDedup.run(dedupKey, expiresAt, now).changes === 0) {
      return { seqs: [] as number[], duplicate: true };
    }
    const seqs = rows.map((r) =>
      Number(q.insert.run(r.dev, r.envelope, now, expiresAt).lastInsertRowid),
    );
    return { seqs, duplicate: false };
  };

  const ackOne = (accountId: string, deviceId: number, seqs: number[]) => {
    const dev = ctx.devKey(accountId, deviceId);
    if (dev === undefined) return 0;
    if (seqs.length > ACK_ONE_BY_ONE) return q.ackMany.run(dev, JSON.stringify(seqs)).changes;
    let deleted = 0;
    for (const seq of seqs) deleted += q.ackOne.run(seq, dev).changes;
    return deleted;
  };

  let pending: PendingWrite[] = [];
  let timer: NodeJS.Immediate | undefined;
  let holds = 0;
  const commitGroup = db.transaction((writes: PendingWrite[]) =>
    writes.map((w): { ok: true; value: unknown } | { ok: false; error: unknown } => {
      try {
        return { ok: true, value: w.apply() };
      } catch (error) {
        // A failed check wrote nothing; anything else (the database failing) aborts the group.
        if (ServerError.is(error)) return { ok: false, error };
        throw error;
      }
    }),
  );
  const flush = () => {
    if (timer) clearImmediate(timer);
    timer = undefined;
    while (pending.length > 0) {
      const writes = pending.slice(0, GROUP_COMMIT_MAX);
      pending = pending.slice(writes.length);
      let outcomes;
      try {
        outcomes = commitGroup(writes);
      } catch (err) {
        const error = toServerError(err, db);
        for (const w of writes) w.reject(error);
        continue;
      }
      writes.forEach((w, i) => {
        const o = outcomes[i];
        if (o?.ok) w.resolve(o.value);
        else w.reject(o?.error);
      });
    }
  };
  const scheduled = () => {
    timer = undefined;
    if (holds === 0) flush();
  };
  const write = <T>(apply: () => T): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      pending.push({ apply, resolve: (v) => resolve(v as T), reject });
      if (holds === 0) timer ??= setImmediate(scheduled);
    });
  const hold = () => {
    holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--holds === 0 && pending.length > 0) timer ??= setImmediate(scheduled);
    };
  };

  /**
   * Deletes the expired rows of one table, walking it in key order from where the last call
   * stopped (kept in `sweep_cursors` as `name`, also across restarts; the start after a call
   * that reached the end), EXPIRE_BATCH rows per transaction and at most EXPIRE_SCAN_MAX rows
   * per call; returns how many it deleted.
   */
  const sweeper = <K extends number | string>(
    name: string,
    start: K,
    rangeEnd: (after: K) => K | null,
    deleteRange: (after: K, upTo: K, now: number) => number,
  ) => {
    const range = db.transaction((now: number) => {
      const after = (q.getCursor.get(name)?.position ?? start) as K;
      const upTo = rangeEnd(after);
      q.setCursor.run(name, upTo ?? start);
      return upTo === null ? null : deleteRange(after, upTo, now);
    });
    return async (now: number): Promise<number> => {
      let deleted = 0;
      for (let scanned = 0; scanned < EXPIRE_SCAN_MAX; scanned += EXPIRE_BATCH) {
        const n = range(now);
        if (n === null) break;
        deleted += n;
        await yieldToEventLoop();
      }
      return deleted;
    };
  };
  const sweepQueue = sweeper<number>(
    "queue",
    0,
    (after) => q.queueRangeEnd.get(after, EXPIRE_BATCH)?.hi ?? null,
    (after, upTo, now) => q.expireQueueRange.run(after, upTo, now).changes,
  );
  const sweepDedup = sweeper<string>(
    "dedup",
    "",
    (after) => q.dedupRangeEnd.get(after, EXPIRE_BATCH)?.hi ?? null,
    (after, upTo, now) => q.expireDedupRange.run(after, upTo, now).changes,
  );

  return {
    enqueue: (inserts, options) => write(() => enqueueOne(inserts, options)),
    fetchQueue: (accountId, deviceId, afterSeq, limit, now = -Infinity) =>
      run((): QueuedMessage[] => {
        const dev = ctx.devKey(accountId, deviceId);
        // LIMIT with a negative value means "no limit" in SQLite.
        if (dev === undefined || !(limit >= 1)) return [];
        return q.fetch.all(dev, afterSeq, now, Math.floor(limit)).map((r) => ({
          seq: r.seq,
          envelope: bytes(r.envelope),
          enqueuedAt: r.enqueued_at,
        }));
      }),
    ack: (accountId, deviceId, seqs) => write(() => ackOne(accountId, deviceId, seqs)),
    flushQueueWrites: flush,
    holdQueueWrites: hold,
    groupWrite: write,
    async expire(now) {
      try {
        const messages = await sweepQueue(now);
        await sweepDedup(now);
        q.expireReservations.run(now);
        return messages;
      } catch (err) {
        throw toServerError(err, db);
      }
    },
    queueDepth: () => run(() => q.depth.get()?.n ?? 0),
  };
}
