import { createHash } from "node:crypto";
import pg from "pg";
import type { Logger } from "pino";
import { ServerError } from "../errors.ts";
import { migratePg, quoteIdent } from "./pg-schema.ts";
import {
  membershipChange,
  noticeRecipients,
  type AccountRecord,
  type DeviceRecord,
  type DeviceRef,
  type GroupNoticeOptions,
  type GroupRecord,
  type NewDevice,
  type PreKeyBundleRecord,
  type PreKeyUpload,
  type QueueInsert,
  type ServerStore,
  type SignedPreKeyRecord,
} from "./server-store.ts";

/** Options of {@link openPgServerStore}. */
export interface PgServerStoreOptions {
  /** `postgres://user@host:port/database` */
  connectionString: string;
  /** Schema holding the tables (created if missing; default "pairwise"). */
  schema?: string;
  /** Pool size (default 10). */
  maxConnections?: number;
  now?: () => number;
  logger?: Logger;
}

/** Pool figures for /healthz and /metrics. */
export interface PgPoolStats {
  total: number;
  idle: number;
  waiting: number;
  max: number;
}

/** The PostgreSQL store: a {@link ServerStore} plus its pool's figures. */
export interface PgServerStore extends ServerStore {
  poolStats(): PgPoolStats;
}

// BIGINT columns are milliseconds and sequence values, all below 2^53: read them as numbers.
const INT8_OID = 20;
const parseInt8 = (v: string) => Number(v);
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary"): unknown =>
    oid === INT8_OID
      ? parseInt8
      : (pg.types.getTypeParser as (o: number, f?: "text" | "binary") => unknown)(
          oid,
          format,
        )) as typeof pg.types.getTypeParser,
};

type Db = pg.Pool | pg.PoolClient;

/** PostgreSQL error codes that mean "the database cannot serve right now". */
const UNAVAILABLE_CLASSES = ["08", "53", "57", "58"];

function toServerError(err: unknown): ServerError {
  if (ServerError.is(err)) return err;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string") {
    if (code === "23505") return new ServerError("Conflict", "already exists", { cause: err });
    if (code === "23503")
      return new ServerError("NotFound", "referenced record does not exist", { cause: err });
    if (code.startsWith("23"))
      return new ServerError("InvalidRequest", "value violates a constraint", { cause: err });
    if (UNAVAILABLE_CLASSES.includes(code.slice(0, 2)))
      return new ServerError("Unavailable", "database unavailable", { cause: err });
    if (code === "ECONNREFUSED" || code === "ECONNRESET" || code === "ETIMEDOUT")
      return new ServerError("Unavailable", "database unreachable", { cause: err });
  }
  return new ServerError("Internal", "database operation failed", { cause: err });
}

const u8 = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
const buf = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

interface DeviceRow {
  dev: number;
  account_id: string;
  device_id: number;
  key_index: number;
  registration_id: number;
  identity_key: Buffer;
  signed_device_identity: Buffer;
  noise_key: Buffer;
  name: string;
  platform: string;
  linked_at: number;
  last_seen: number;
}

const DEVICE_COLUMNS =
  "dev, account_id, device_id, key_index, registration_id, identity_key, signed_device_identity, noise_key, name, platform, linked_at, last_seen";

const toDevice = (r: DeviceRow): DeviceRecord => ({
  accountId: r.account_id,
  deviceId: r.device_id,
  keyIndex: r.key_index,
  registrationId: r.registration_id,
  identityKey: u8(r.identity_key),
  signedDeviceIdentity: u8(r.signed_device_identity),
  noiseKey: u8(r.noise_key),
  name: r.name,
  platform: r.platform,
  linkedAt: r.linked_at,
  lastSeen: r.last_seen,
});

interface SignedRow {
  key_id: number;
  public_key: Buffer;
  signature: Buffer;
}
const signedRecord = (r: SignedRow): SignedPreKeyRecord => ({
  id: r.key_id,
  publicKey: u8(r.public_key),
  signature: u8(r.signature),
});

const hashToken = (token: string) => createHash("sha256").update(token, "utf8").digest();

/** Writes submitted or acknowledged together at most (the group commit). */
const GROUP_COMMIT_MAX = 512;

/** Internal device keys of the group's enqueue targets, by `account|device`, locked. */
type LockedDevices = Map<string, number>;

interface PendingWrite {
  /** Devices this write enqueues to: locked (in `dev` order) before any write of the group. */
  targets?: QueueInsert[];
  apply(client: pg.PoolClient, locked: LockedDevices): Promise<unknown>;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/**
 * Opens the PostgreSQL store: a connection pool, migrations (run once, under an advisory lock,
 * whichever node starts first), and the same behaviour as the SQLite store — the contract suite
 * runs against both. Several server nodes share one database: every method is one statement or
 * one transaction, with row locks where two nodes could race (companion reservations, prekey
 * pops with `FOR UPDATE SKIP LOCKED`, the dedup claim, device-list compare-and-set).
 *
 * Enqueues and acks made in the same event-loop turn share one transaction (group commit), as
 * on SQLite; each stays atomic on its own.
 */
export async function openPgServerStore(options: PgServerStoreOptions): Promise<PgServerStore> {
  const schema = options.schema ?? "pairwise";
  const max = options.maxConnections ?? 10;
  const now = options.now ?? Date.now;
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max,
    options: `-c search_path=${quoteIdent(schema)}`,
    types,
    connectionTimeoutMillis: 10_000,
  });
  // An idle client losing its connection must not crash the process; the next query reconnects.
  pool.on("error", (err) =>
    options.logger?.warn({ code: (err as { code?: string }).code }, "database connection lost"),
  );
  let closed = false;
  try {
    await migratePg(pool, schema, options.logger);
  } catch (err) {
    await pool.end().catch(() => undefined);
    if (ServerError.is(err)) throw err;
    throw new ServerError("Unavailable", "cannot open the server database", { cause: err });
  }

  const guard = async <T>(fn: () => Promise<T>): Promise<T> => {
    if (closed) throw new ServerError("Unavailable", "database is closed");
    try {
      return await fn();
    } catch (err) {
      throw toServerError(err);
    }
  };
  const tx = <T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> =>
    guard(async () => {
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        try {
          const result = await fn(client);
          await client.query("COMMIT");
          return result;
        } catch (err) {
          await client.query("ROLLBACK").catch(() => undefined);
          throw err;
        }
      } finally {
        client.release();
      }
    });
  const one = async <R extends pg.QueryResultRow>(
    db: Db,
    sql: string,
    params: unknown[],
  ): Promise<R | undefined> => (await db.query<R>(sql, params)).rows[0];

  const devKey = async (db: Db, accountId: string, deviceId: number) =>
    (
      await one<{ dev: number }>(
        db,
        "SELECT dev FROM devices WHERE account_id = $1 AND device_id = $2",
        [accountId, deviceId],
      )
    )?.dev;

  const writeKeys = async (db: Db, dev: number, upload: PreKeyUpload, at: number) => {
    const s = upload.signedPreKey;
    if (s) {
      await db.query(
        `INSERT INTO signed_prekeys (dev, key_id, public_key, signature, uploaded_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (dev) DO UPDATE SET key_id = excluded.key_id, public_key = excluded.public_key,
           signature = excluded.signature, uploaded_at = excluded.uploaded_at`,
        [dev, s.id, buf(s.publicKey), buf(s.signature), at],
      );
    }
    const lr = upload.lastResortKyberPreKey;
    if (lr) {
      await db.query("DELETE FROM kyber_prekeys WHERE dev = $1 AND last_resort", [dev]);
      await db.query(
        `INSERT INTO kyber_prekeys (dev, last_resort, key_id, public_key, signature)
         VALUES ($1, true, $2, $3, $4)`,
        [dev, lr.id, buf(lr.publicKey), buf(lr.signature)],
      );
    }
    if (upload.preKeys.length > 0) {
      await db.query(
        `INSERT INTO prekeys (dev, key_id, public_key)
         SELECT $1, * FROM unnest($2::int[], $3::bytea[])
         ON CONFLICT (dev, key_id) DO UPDATE SET public_key = excluded.public_key`,
        [dev, upload.preKeys.map((k) => k.id), upload.preKeys.map((k) => buf(k.publicKey))],
      );
    }
    if (upload.kyberPreKeys.length > 0) {
      await db.query(
        `INSERT INTO kyber_prekeys (dev, last_resort, key_id, public_key, signature)
         SELECT $1, false, * FROM unnest($2::int[], $3::bytea[], $4::bytea[])
         ON CONFLICT (dev, last_resort, key_id) DO UPDATE SET public_key = excluded.public_key,
           signature = excluded.signature`,
        [
          dev,
          upload.kyberPreKeys.map((k) => k.id),
          upload.kyberPreKeys.map((k) => buf(k.publicKey)),
          upload.kyberPreKeys.map((k) => buf(k.signature)),
        ],
      );
    }
  };

  const insertDevice = async (c: Db, accountId: string, d: NewDevice, at: number) => {
    const row = await one<{ dev: number }>(
      c,
      `INSERT INTO devices (account_id, device_id, key_index, registration_id, identity_key,
         signed_device_identity, noise_key, name, platform, linked_at, last_seen)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING dev`,
      [
        accountId,
        d.deviceId,
        d.keyIndex,
        d.registrationId,
        buf(d.identityKey),
        buf(d.signedDeviceIdentity),
        buf(d.noiseKey),
        d.name,
        d.platform,
        at,
      ],
    );
    if (!row) throw new ServerError("Internal", "device insert returned nothing");
    await writeKeys(c, row.dev, d.keys, at);
  };

  const casDeviceList = async (c: Db, accountId: string, list: Uint8Array, timestamp: number) => {
    const r = await c.query(
      `UPDATE accounts SET signed_device_list = $1, device_list_timestamp = $2
       WHERE account_id = $3 AND device_list_timestamp < $2`,
      [buf(list), timestamp, accountId],
    );
    if (r.rowCount === 1) return;
    if (!(await one(c, "SELECT 1 FROM accounts WHERE account_id = $1", [accountId])))
      throw new ServerError("NotFound", "account not found");
    throw new ServerError("StaleDeviceList", "device list is not newer than the stored one");
  };

  // ---------------------------------------------------------------- group commit of queue writes
  const pending: PendingWrite[] = [];
  let timer: NodeJS.Immediate | undefined;
  const flushGroup = async (writes: PendingWrite[]) => {
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      await tx(async (c) => {
        outcomes.length = 0;
        // Lock every recipient device row first, in one statement and in `dev` order: a device's
        // enqueues then commit one transaction after another across every node, so its seqs
        // become visible in increasing order (a delivery cursor never skips a later-committed
        // lower seq), and two nodes' groups cannot deadlock on each other.
        const accounts: string[] = [];
        const deviceIds: number[] = [];
        for (const w of writes)
          for (const t of w.targets ?? []) {
            accounts.push(t.accountId);
            deviceIds.push(t.deviceId);
          }
        const locked: LockedDevices = new Map();
        if (accounts.length > 0) {
          const rows = await c.query<{ dev: number; account_id: string; device_id: number }>(
            `SELECT d.dev, d.account_id, d.device_id FROM devices d
             JOIN (SELECT DISTINCT * FROM unnest($1::text[], $2::int[])) AS t (a, i)
               ON d.account_id = t.a AND d.device_id = t.i
             ORDER BY d.dev FOR UPDATE OF d`,
            [accounts, deviceIds],
          );
          for (const r of rows.rows) locked.set(`${r.account_id}|${r.device_id}`, r.dev);
        }
        for (const w of writes) {
          try {
            outcomes.push({ ok: true, value: await w.apply(c, locked) });
          } catch (error) {
            // A failed check wrote nothing; a database error aborts the whole group.
            if (ServerError.is(error)) outcomes.push({ ok: false, error });
            else throw error;
          }
        }
      });
    } catch (err) {
      const error = toServerError(err);
      for (const w of writes) w.reject(error);
      return;
    }
    writes.forEach((w, i) => {
      const o = outcomes[i];
      if (o?.ok) w.resolve(o.value);
      else w.reject(o?.error);
    });
  };
  // Up to GROUPS_IN_FLIGHT groups commit at once (PostgreSQL merges their WAL flushes); a new
  // group takes everything that arrived meanwhile, so the busier the store, the larger the
  // groups. Per recipient device, order holds: groups lock its row before inserting.
  const groupsInFlight = Math.max(1, Math.min(4, max - 2));
  let running = 0;
  let idle: Promise<void> = Promise.resolve();
  let markIdle: () => void = () => undefined;
  const flush = () => {
    timer = undefined;
    if (running === 0 && pending.length > 0)
      idle = new Promise<void>((resolve) => (markIdle = resolve));
    while (running < groupsInFlight && pending.length > 0) {
      running++;
      void flushGroup(pending.splice(0, GROUP_COMMIT_MAX)).finally(() => {
        running--;
        if (pending.length > 0) flush();
        else if (running === 0) markIdle();
      });
    }
  };
  const write = <T>(
    apply: (c: pg.PoolClient, locked: LockedDevices) => Promise<T>,
    targets?: QueueInsert[],
  ): Promise<T> => {
    if (closed) return Promise.reject(new ServerError("Unavailable", "database is closed"));
    return new Promise<T>((resolve, reject) => {
      pending.push({
        apply,
        ...(targets ? { targets } : {}),
        resolve: (v) => resolve(v as T),
        reject,
      });
      timer ??= setImmediate(flush);
    });
  };

  const store: PgServerStore = {
    poolStats: () => ({
      total: pool.totalCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
      max,
    }),

    // ------------------------------------------------------------ accounts and devices
    createAccount: (input) =>
      tx(async (c) => {
        if (input.primary.deviceId !== 1) {
          throw new ServerError("InvalidRequest", "the primary must be device 1");
        }
        await c.query(
          `INSERT INTO accounts (account_id, account_key, signed_device_list, device_list_timestamp,
             created_at, next_device_id, next_key_index) VALUES ($1, $2, $3, $4, $5, 2, $6)`,
          [
            input.accountId,
            buf(input.accountKey),
            buf(input.signedDeviceList),
            input.deviceListTimestamp,
            input.now,
            input.primary.keyIndex + 1,
          ],
        );
        await insertDevice(c, input.accountId, input.primary, input.now);
      }),
    getAccount: (accountId) =>
      guard(async () => {
        const r = await one<{
          account_key: Buffer;
          signed_device_list: Buffer;
          device_list_timestamp: number;
          created_at: number;
        }>(
          pool,
          `SELECT account_key, signed_device_list, device_list_timestamp, created_at
           FROM accounts WHERE account_id = $1`,
          [accountId],
        );
        if (!r) return undefined;
        const account: AccountRecord = {
          accountId,
          accountKey: u8(r.account_key),
          signedDeviceList: u8(r.signed_device_list),
          deviceListTimestamp: r.device_list_timestamp,
          createdAt: r.created_at,
        };
        return account;
      }),
    deleteAccount: (accountId) =>
      guard(async () => {
        const r = await pool.query("DELETE FROM accounts WHERE account_id = $1", [accountId]);
        if (r.rowCount === 0) throw new ServerError("NotFound", "account not found");
      }),
    getDevice: (accountId, deviceId) =>
      guard(async () => {
        const r = await one<DeviceRow>(
          pool,
          `SELECT ${DEVICE_COLUMNS} FROM devices WHERE account_id = $1 AND device_id = $2`,
          [accountId, deviceId],
        );
        return r && toDevice(r);
      }),
    getDeviceByNoiseKey: (noiseKey) =>
      guard(async () => {
        const r = await one<DeviceRow>(
          pool,
          `SELECT ${DEVICE_COLUMNS} FROM devices WHERE noise_key = $1`,
          [buf(noiseKey)],
        );
        return r && toDevice(r);
      }),
    listDevices: (accountId) =>
      guard(async () =>
        (
          await pool.query<DeviceRow>(
            `SELECT ${DEVICE_COLUMNS} FROM devices WHERE account_id = $1 ORDER BY device_id`,
            [accountId],
          )
        ).rows.map(toDevice),
      ),
    reserveCompanion: (input) =>
      tx(async (c) => {
        // The account row lock serialises reservations of one account across nodes.
        const counters = await one<{ next_device_id: number; next_key_index: number }>(
          c,
          "SELECT next_device_id, next_key_index FROM accounts WHERE account_id = $1 FOR UPDATE",
          [input.accountId],
        );
        if (!counters) throw new ServerError("NotFound", "account not found");
        await c.query("DELETE FROM reservations WHERE account_id = $1 AND expires_at <= $2", [
          input.accountId,
          input.now,
        ]);
        const companions = await one<{ n: number }>(
          c,
          "SELECT count(*)::int AS n FROM devices WHERE account_id = $1 AND device_id <> 1",
          [input.accountId],
        );
        const reserved = await one<{ n: number }>(
          c,
          "SELECT count(*)::int AS n FROM reservations WHERE account_id = $1 AND expires_at > $2",
          [input.accountId, input.now],
        );
        if (
          (companions?.n ?? 0) + (reserved?.n ?? 0) >= input.maxCompanions ||
          counters.next_device_id > 127
        ) {
          throw new ServerError("TooManyDevices", "the account has no free companion slot");
        }
        const slot = { deviceId: counters.next_device_id, keyIndex: counters.next_key_index };
        await c.query(
          "INSERT INTO reservations (account_id, device_id, key_index, expires_at) VALUES ($1, $2, $3, $4)",
          [input.accountId, slot.deviceId, slot.keyIndex, input.now + input.ttlMs],
        );
        await c.query(
          `UPDATE accounts SET next_device_id = next_device_id + 1,
             next_key_index = next_key_index + 1 WHERE account_id = $1`,
          [input.accountId],
        );
        return slot;
      }),
    getReservation: (accountId, deviceId, at) =>
      guard(async () => {
        const r = await one<{ key_index: number }>(
          pool,
          `SELECT key_index FROM reservations
           WHERE account_id = $1 AND device_id = $2 AND expires_at > $3`,
          [accountId, deviceId, at],
        );
        return r && { keyIndex: r.key_index };
      }),
    addCompanion: (input) =>
      tx(async (c) => {
        const { accountId, device } = input;
        const reserved = await one<{ key_index: number }>(
          c,
          `SELECT key_index FROM reservations
           WHERE account_id = $1 AND device_id = $2 AND expires_at > $3 FOR UPDATE`,
          [accountId, device.deviceId, input.now],
        );
        if (reserved?.key_index !== device.keyIndex) {
          throw new ServerError("NotFound", "no live reservation for this device");
        }
        if (await devKey(c, accountId, device.deviceId)) {
          throw new ServerError("Conflict", "device already exists");
        }
        await insertDevice(c, accountId, device, input.now);
        await c.query("DELETE FROM reservations WHERE account_id = $1 AND device_id = $2", [
          accountId,
          device.deviceId,
        ]);
      }),
    updateDeviceList: (input) =>
      guard(() => casDeviceList(pool, input.accountId, input.signedDeviceList, input.timestamp)),
    removeDevice: (input) =>
      tx(async (c) => {
        if (input.deviceId === 1)
          throw new ServerError("InvalidRequest", "the primary cannot be removed");
        const current = await one<{ device_list_timestamp: number }>(
          c,
          "SELECT device_list_timestamp FROM accounts WHERE account_id = $1 FOR UPDATE",
          [input.accountId],
        );
        if (!current) throw new ServerError("NotFound", "account not found");
        if (input.timestamp < current.device_list_timestamp) {
          throw new ServerError("StaleDeviceList", "device list is older than the stored one");
        }
        const dev = await devKey(c, input.accountId, input.deviceId);
        if (dev === undefined) throw new ServerError("NotFound", "device not found");
        if (input.primarySeenBefore !== undefined) {
          // Locked: a touch of the primary (another node's connect) waits for this transaction,
          // or has committed and is read here.
          const primary = await one<{ last_seen: number }>(
            c,
            "SELECT last_seen FROM devices WHERE account_id = $1 AND device_id = 1 FOR UPDATE",
            [input.accountId],
          );
          if (primary && primary.last_seen >= input.primarySeenBefore) {
            throw new ServerError("Conflict", "the primary has been seen since");
          }
        }
        if (input.timestamp > current.device_list_timestamp) {
          await casDeviceList(c, input.accountId, input.signedDeviceList, input.timestamp);
        }
        // Keys and queue go with the device (ON DELETE CASCADE).
        await c.query("DELETE FROM devices WHERE dev = $1", [dev]);
      }),
    touchDevice: (accountId, deviceId, at) =>
      guard(async () => {
        await pool.query(
          "UPDATE devices SET last_seen = $1 WHERE account_id = $2 AND device_id = $3 AND last_seen < $1",
          [at, accountId, deviceId],
        );
      }),
    listStaleCompanions: (before) =>
      guard(async () =>
        (
          await pool.query<{ account_id: string; device_id: number }>(
            `SELECT c.account_id, c.device_id FROM devices AS p
             JOIN devices AS c ON c.account_id = p.account_id AND c.device_id <> 1
             WHERE p.device_id = 1 AND p.last_seen < $1 ORDER BY c.account_id, c.device_id`,
            [before],
          )
        ).rows.map((r) => ({ accountId: r.account_id, deviceId: r.device_id })),
      ),

    // ------------------------------------------------------------ prekeys
    putPreKeys: (accountId, deviceId, upload, at) =>
      tx(async (c) => {
        const dev = await devKey(c, accountId, deviceId);
        if (dev === undefined) throw new ServerError("NotFound", "device not found");
        await writeKeys(c, dev, upload, at);
      }),
    takePreKeyBundle: (accountId, deviceId) =>
      tx(async (c): Promise<PreKeyBundleRecord | undefined> => {
        const d = await one<{ dev: number; registration_id: number; identity_key: Buffer }>(
          c,
          "SELECT dev, registration_id, identity_key FROM devices WHERE account_id = $1 AND device_id = $2",
          [accountId, deviceId],
        );
        if (!d) return undefined;
        const spk = await one<SignedRow>(
          c,
          "SELECT key_id, public_key, signature FROM signed_prekeys WHERE dev = $1",
          [d.dev],
        );
        if (!spk) return undefined;
        // SKIP LOCKED: two nodes popping at once each get a different key, neither waits.
        const kyber =
          (await one<SignedRow>(
            c,
            `DELETE FROM kyber_prekeys WHERE id = (
               SELECT id FROM kyber_prekeys WHERE dev = $1 AND NOT last_resort
               ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING key_id, public_key, signature`,
            [d.dev],
          )) ??
          (await one<SignedRow>(
            c,
            "SELECT key_id, public_key, signature FROM kyber_prekeys WHERE dev = $1 AND last_resort",
            [d.dev],
          ));
        if (!kyber) return undefined;
        const pre = await one<{ key_id: number; public_key: Buffer }>(
          c,
          `DELETE FROM prekeys WHERE dev = $1 AND key_id = (
             SELECT key_id FROM prekeys WHERE dev = $1 ORDER BY key_id LIMIT 1
             FOR UPDATE SKIP LOCKED)
           RETURNING key_id, public_key`,
          [d.dev],
        );
        return {
          deviceId,
          registrationId: d.registration_id,
          identityKey: u8(d.identity_key),
          signedPreKey: signedRecord(spk),
          ...(pre ? { preKey: { id: pre.key_id, publicKey: u8(pre.public_key) } } : {}),
          kyberPreKey: signedRecord(kyber),
        };
      }),
    countPreKeys: (accountId, deviceId) =>
      guard(async () => {
        const dev = await devKey(pool, accountId, deviceId);
        if (dev === undefined) throw new ServerError("NotFound", "device not found");
        const r = await one<{ pre: number; kyber: number; uploaded: number | null }>(
          pool,
          `SELECT (SELECT count(*)::int FROM prekeys WHERE dev = $1) AS pre,
                  (SELECT count(*)::int FROM kyber_prekeys WHERE dev = $1 AND NOT last_resort) AS kyber,
                  (SELECT uploaded_at FROM signed_prekeys WHERE dev = $1) AS uploaded`,
          [dev],
        );
        return {
          preKeys: r?.pre ?? 0,
          kyberPreKeys: r?.kyber ?? 0,
          signedPreKeyUploadedAt: r?.uploaded ?? 0,
        };
      }),

    // ------------------------------------------------------------ queues
    enqueue: (inserts: QueueInsert[], opts) =>
      write(async (c, locked) => {
        const devs: number[] = [];
        for (const ins of inserts) {
          const dev = locked.get(`${ins.accountId}|${ins.deviceId}`);
          if (dev === undefined) throw new ServerError("NotFound", "device not found");
          devs.push(dev);
        }
        // One statement: claim the dedup key (if any) and, only if claimed, insert every copy;
        // seqs come back in the copies' order.
        const r = await one<{ claimed: boolean; seqs: number[] }>(
          c,
          `WITH claim AS (
             INSERT INTO dedup (key, expires_at) SELECT $5, $4 WHERE $5::text IS NOT NULL
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
             WHERE dedup.expires_at <= $3
             RETURNING 1),
           ok AS (SELECT $5::text IS NULL OR EXISTS (SELECT 1 FROM claim) AS claimed),
           inserted AS (
             INSERT INTO queue (dev, envelope, enqueued_at, expires_at)
             SELECT t.dev, t.envelope, $3, $4
             FROM unnest($1::bigint[], $2::bytea[]) WITH ORDINALITY AS t (dev, envelope, ord)
             WHERE (SELECT claimed FROM ok) ORDER BY t.ord
             RETURNING seq)
           SELECT (SELECT claimed FROM ok) AS claimed,
                  array(SELECT seq FROM inserted ORDER BY seq) AS seqs`,
          [
            devs,
            inserts.map((i) => buf(i.envelope)),
            opts.now,
            opts.expiresAt,
            opts.dedupKey ?? null,
          ],
        );
        if (!r?.claimed) return { seqs: [] as number[], duplicate: true };
        return { seqs: r.seqs.map(Number), duplicate: false };
      }, inserts),
    fetchQueue: (accountId, deviceId, afterSeq, limit, now) =>
      guard(async () => {
        if (!(limit >= 1)) return [];
        const r = await pool.query<{ seq: number; envelope: Buffer; enqueued_at: number }>(
          `SELECT q.seq, q.envelope, q.enqueued_at FROM queue q
           JOIN devices d ON d.dev = q.dev
           WHERE d.account_id = $1 AND d.device_id = $2 AND q.seq > $3
             AND ($5::bigint IS NULL OR q.expires_at > $5::bigint)
           ORDER BY q.seq LIMIT $4`,
          [accountId, deviceId, afterSeq, Math.floor(limit), now ?? null],
        );
        return r.rows.map((row) => ({
          seq: row.seq,
          envelope: u8(row.envelope),
          enqueuedAt: row.enqueued_at,
        }));
      }),
    ack: (accountId, deviceId, seqs) =>
      write(async (c) => {
        if (seqs.length === 0) return 0;
        const r = await c.query(
          `DELETE FROM queue WHERE seq = ANY($3::bigint[])
             AND dev = (SELECT dev FROM devices WHERE account_id = $1 AND device_id = $2)`,
          [accountId, deviceId, seqs],
        );
        return r.rowCount ?? 0;
      }),
    expire: (at) =>
      guard(async () => {
        let messages = 0;
        for (;;) {
          const r = await pool.query(
            `DELETE FROM queue WHERE seq IN (
               SELECT seq FROM queue WHERE expires_at <= $1 LIMIT 2000 FOR UPDATE SKIP LOCKED)`,
            [at],
          );
          messages += r.rowCount ?? 0;
          if ((r.rowCount ?? 0) < 2000) break;
        }
        for (;;) {
          const r = await pool.query(
            `DELETE FROM dedup WHERE key IN (
               SELECT key FROM dedup WHERE expires_at <= $1 LIMIT 2000 FOR UPDATE SKIP LOCKED)`,
            [at],
          );
          if ((r.rowCount ?? 0) < 2000) break;
        }
        await pool.query("DELETE FROM reservations WHERE expires_at <= $1", [at]);
        return messages;
      }),
    queueDepth: () =>
      guard(
        async () =>
          (await one<{ n: number }>(pool, "SELECT count(*)::int AS n FROM queue", []))?.n ?? 0,
      ),

    // ------------------------------------------------------------ groups
    // A change and its notices commit in one transaction. The group row is locked first (the
    // insert, or the revision bump), so changes of one group are serialized; recipient device
    // rows are then locked in `dev` order before the notices are inserted, as the group commit
    // of `enqueue` does, so each device's seqs still become visible in increasing order.
    createGroup: (group: GroupRecord, notice?: GroupNoticeOptions) =>
      tx(async (c) => {
        const at = now();
        await c.query(
          `INSERT INTO chat_groups (group_id, name, revision, created_by, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $5)`,
          [group.groupId, group.name, group.revision, group.createdBy, at],
        );
        for (const m of group.members)
          await c.query(
            "INSERT INTO group_members (group_id, member) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [group.groupId, m],
          );
        const stored = await readGroup(c, group.groupId);
        if (!stored) throw new ServerError("Internal", "group vanished during creation");
        return { notified: await queueNotices(c, [], stored, notice) };
      }),
    getGroup: (groupId) => guard(() => readGroup(pool, groupId)),
    updateGroup: (groupId, change, notice) =>
      tx(async (c) => {
        const bumped = await c.query(
          "UPDATE chat_groups SET revision = revision + 1, updated_at = $1 WHERE group_id = $2",
          [now(), groupId],
        );
        if (bumped.rowCount === 0) throw new ServerError("NotFound", "group not found");
        const before = (
          await c.query<{ member: string }>(
            "SELECT member FROM group_members WHERE group_id = $1 ORDER BY pos",
            [groupId],
          )
        ).rows.map((r) => r.member);
        for (const m of change.remove)
          await c.query("DELETE FROM group_members WHERE group_id = $1 AND member = $2", [
            groupId,
            m,
          ]);
        for (const m of change.add)
          await c.query(
            "INSERT INTO group_members (group_id, member) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [groupId, m],
          );
        const group = await readGroup(c, groupId);
        if (!group) throw new ServerError("Internal", "group vanished during update");
        return { ...group, notified: await queueNotices(c, before, group, notice) };
      }),

    // ------------------------------------------------------------ blobs
    putBlob: (blob) =>
      guard(async () => {
        await pool.query(
          "INSERT INTO blobs (blob_id, size, sha256, owner, created_at) VALUES ($1, $2, $3, $4, $5)",
          [blob.blobId, blob.size, buf(blob.sha256), blob.owner, blob.now],
        );
      }),
    getBlob: (blobId) =>
      guard(async () => {
        const r = await one<{ size: number; sha256: Buffer }>(
          pool,
          "SELECT size, sha256 FROM blobs WHERE blob_id = $1",
          [blobId],
        );
        return r && { blobId, size: r.size, sha256: u8(r.sha256) };
      }),

    // ------------------------------------------------------------ invites
    addInvite: (token, at) =>
      guard(async () => {
        await pool.query("INSERT INTO invites (token_hash, created_at) VALUES ($1, $2)", [
          hashToken(token),
          at,
        ]);
      }),
    useInvite: (token, at) =>
      guard(
        async () =>
          (
            await pool.query(
              "UPDATE invites SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
              [at, hashToken(token)],
            )
          ).rowCount === 1,
      ),

    // ------------------------------------------------------------ backup key vault
    createVaultRecord: (input) =>
      guard(async () => {
        await pool.query(
          `INSERT INTO backup_vault (vault_id, registration_record, wrapped_key, created_at)
           VALUES ($1, $2, $3, $4)`,
          [input.vaultId, input.registrationRecord, buf(input.wrappedKey), input.now],
        );
      }),
    getVaultRecord: (vaultId) =>
      guard(async () => {
        const r = await one<{ registration_record: string; guesses: number }>(
          pool,
          "SELECT registration_record, guesses FROM backup_vault WHERE vault_id = $1",
          [vaultId],
        );
        return r && { registrationRecord: r.registration_record, guesses: r.guesses };
      }),
    // The conditional UPDATE takes the record's row lock: concurrent guesses from any number of
    // nodes are counted one after another and never pass the limit.
    countVaultGuess: (input) =>
      tx(async (c) => {
        const counted = await one<{ guesses: number }>(
          c,
          `UPDATE backup_vault SET guesses = guesses + 1
           WHERE vault_id = $1 AND guesses < $2 RETURNING guesses`,
          [input.vaultId, input.maxGuesses],
        );
        if (counted) {
          await c.query(
            `INSERT INTO backup_vault_logins (login_id, vault_id, state, expires_at)
             VALUES ($1, $2, $3, $4)`,
            [input.login.loginId, input.vaultId, input.login.state, input.login.expiresAt],
          );
          return { guesses: counted.guesses };
        }
        if (!(await one(c, "SELECT 1 FROM backup_vault WHERE vault_id = $1", [input.vaultId])))
          return undefined;
        await dropExhaustedVault(c, input.vaultId, input.maxGuesses, input.now);
        return "locked" as const;
      }),
    takeVaultLogin: (loginId, at) =>
      guard(async () => {
        const r = await one<{ vault_id: string; state: string; expires_at: number }>(
          pool,
          "DELETE FROM backup_vault_logins WHERE login_id = $1 RETURNING vault_id, state, expires_at",
          [loginId],
        );
        await pool.query("DELETE FROM backup_vault_logins WHERE expires_at <= $1", [at]);
        return r && r.expires_at > at ? { vaultId: r.vault_id, state: r.state } : undefined;
      }),
    vaultLoginSucceeded: (vaultId) =>
      guard(async () => {
        const r = await one<{ wrapped_key: Buffer }>(
          pool,
          "UPDATE backup_vault SET guesses = 0 WHERE vault_id = $1 RETURNING wrapped_key",
          [vaultId],
        );
        return r && { wrappedKey: u8(r.wrapped_key) };
      }),
    vaultLoginFailed: (vaultId, maxGuesses, at) =>
      guard(() => dropExhaustedVault(pool, vaultId, maxGuesses, at)),
    deleteVaultRecord: (vaultId) =>
      guard(
        async () =>
          (await pool.query("DELETE FROM backup_vault WHERE vault_id = $1", [vaultId])).rowCount ===
          1,
      ),

    ping: () =>
      guard(async () => {
        await pool.query("SELECT 1");
      }),
    close: async () => {
      if (closed) return;
      if (timer) {
        clearImmediate(timer);
        flush();
      }
      await idle;
      closed = true;
      await pool.end();
    },
  };
  return store;
}

/** Deletes a vault record that used up its guesses once no started login of it is live; true if it did. */
async function dropExhaustedVault(
  db: Db,
  vaultId: string,
  maxGuesses: number,
  at: number,
): Promise<boolean> {
  const r = await db.query(
    `DELETE FROM backup_vault WHERE vault_id = $1 AND guesses >= $2 AND NOT EXISTS
       (SELECT 1 FROM backup_vault_logins WHERE vault_id = $1 AND expires_at > $3)`,
    [vaultId, maxGuesses, at],
  );
  return r.rowCount === 1;
}

/** Queues a membership notice (inside the change's transaction); see `createGroup`. */
async function queueNotices(
  c: Db,
  before: readonly string[],
  group: GroupRecord,
  notice: GroupNoticeOptions | undefined,
): Promise<DeviceRef[]> {
  if (!notice) return [];
  const recipients = noticeRecipients(before, group.members);
  if (recipients.length === 0) return [];
  const envelope = Buffer.from(notice.envelope(group, membershipChange(before, group.members)));
  const rows = (
    await c.query<{ dev: number; account_id: string; device_id: number }>(
      `SELECT dev, account_id, device_id FROM devices WHERE account_id = ANY($1::text[])
       ORDER BY dev FOR UPDATE`,
      [recipients],
    )
  ).rows.filter(
    (r) => !(notice.skip?.accountId === r.account_id && notice.skip.deviceId === r.device_id),
  );
  if (rows.length === 0) return [];
  await c.query(
    `INSERT INTO queue (dev, envelope, enqueued_at, expires_at)
     SELECT dev, $2, $3, $4 FROM unnest($1::bigint[]) AS t (dev)`,
    [rows.map((r) => r.dev), envelope, notice.now, notice.expiresAt],
  );
  return rows.map((r) => ({ accountId: r.account_id, deviceId: r.device_id }));
}

async function readGroup(db: Db, groupId: string): Promise<GroupRecord | undefined> {
  const g = await db.query<{ name: string; revision: number; created_by: string }>(
    "SELECT name, revision, created_by FROM chat_groups WHERE group_id = $1",
    [groupId],
  );
  const row = g.rows[0];
  if (!row) return undefined;
  const members = await db.query<{ member: string }>(
    "SELECT member FROM group_members WHERE group_id = $1 ORDER BY pos",
    [groupId],
  );
  return {
    groupId,
    name: row.name,
    members: members.rows.map((m) => m.member),
    revision: row.revision,
    createdBy: row.created_by,
  };
}
