// The server's storage contract against the PostgreSQL running on this machine (and in CI):
// 127.0.0.1:5432, database `test`, trust auth; override with PAIRWISE_TEST_POSTGRES.
import { randomBytes, randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { ServerError } from "../errors.ts";
import { PG_SCHEMA_VERSION } from "./pg-schema.ts";
import { openPgServerStore } from "./pg-server-store.ts";
import { T0, bytes, codeOf, describeServerStoreContract, newDevice } from "./store-contract.ts";

export const TEST_POSTGRES =
  process.env.PAIRWISE_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";
const schema = `pw_test_${randomBytes(6).toString("hex")}`;

afterAll(async () => {
  const c = new pg.Client({ connectionString: TEST_POSTGRES });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await c.end();
});

describeServerStoreContract("PostgreSQL", () =>
  openPgServerStore({ connectionString: TEST_POSTGRES, schema, maxConnections: 4 }),
);

describe("PostgreSQL store", () => {
  it("removes a companion on condition only after a write of its primary's last_seen under way commits, and sees it", async () => {
    const store = await openPgServerStore({
      connectionString: TEST_POSTGRES,
      schema,
      maxConnections: 4,
    });
    const other = new pg.Client({ connectionString: TEST_POSTGRES });
    await other.connect();
    try {
      const accountId = `acct-${randomUUID()}`;
      await store.createAccount({
        accountId,
        accountKey: bytes(33),
        signedDeviceList: bytes(80),
        deviceListTimestamp: 1,
        primary: newDevice(1, 0),
        now: T0,
      });
      const slot = await store.reserveCompanion({ accountId, maxCompanions: 4, now: T0, ttlMs: 1 });
      await store.addCompanion({
        accountId,
        device: newDevice(slot.deviceId, slot.keyIndex),
        now: T0,
      });
      // Another node's connect of the primary, not committed yet.
      await other.query("BEGIN");
      await other.query(
        `UPDATE ${schema}.devices SET last_seen = $1 WHERE account_id = $2 AND device_id = 1`,
        [T0 + 60_000, accountId],
      );
      const removal = codeOf(
        store.removeDevice({
          accountId,
          deviceId: slot.deviceId,
          signedDeviceList: bytes(40),
          timestamp: 1,
          primarySeenBefore: T0 + 1,
        }),
      );
      // The removal waits on the primary's row (bounded: 100 looks, 50 ms apart). Each look
      // drops the statistics snapshot first: inside a transaction PostgreSQL keeps the first
      // look's view of pg_stat_activity, and one taken before the removal got to the lock
      // never showed it waiting (CI once).
      let waiting = false;
      for (let i = 0; i < 100 && !waiting; i++) {
        await other.query("SELECT pg_stat_clear_snapshot()");
        const r = await other.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE wait_event_type = 'Lock' AND query LIKE '%last_seen FROM devices%FOR UPDATE%'`,
        );
        waiting = r.rows[0]!.n > 0;
        if (!waiting) await new Promise((r) => setTimeout(r, 50));
      }
      await other.query("COMMIT");
      expect(waiting).toBe(true);
      expect(await removal).toBe("Conflict");
      expect(await store.getDevice(accountId, slot.deviceId)).toBeDefined();
    } finally {
      await other.query("ROLLBACK").catch(() => undefined);
      await other.end();
      await store.close();
    }
  });

  it("migrates once when several nodes start at the same time", async () => {
    const fresh = `pw_test_${randomBytes(6).toString("hex")}`;
    const stores = await Promise.all(
      [1, 2, 3].map(() =>
        openPgServerStore({ connectionString: TEST_POSTGRES, schema: fresh, maxConnections: 2 }),
      ),
    );
    for (const s of stores) await s.ping();
    const c = new pg.Client({ connectionString: TEST_POSTGRES });
    await c.connect();
    const r = await c.query(`SELECT count(*)::int AS n FROM ${fresh}.pairwise_migrations`);
    expect(r.rows[0]).toEqual({ n: PG_SCHEMA_VERSION });
    await c.query(`DROP SCHEMA ${fresh} CASCADE`);
    await c.end();
    for (const s of stores) await s.close();
  });

  it("drops the dedup keys the version before kept in the clear", async () => {
    const fresh = `pw_test_${randomBytes(6).toString("hex")}`;
    const open = () =>
      openPgServerStore({ connectionString: TEST_POSTGRES, schema: fresh, maxConnections: 2 });
    await (await open()).close();
    const c = new pg.Client({ connectionString: TEST_POSTGRES });
    await c.connect();
    try {
      await c.query(`INSERT INTO ${fresh}.dedup (key, expires_at) VALUES ('acct|1|m-1', 1)`);
      // As the version before left it: the last migration runs again on opening.
      await c.query(`DELETE FROM ${fresh}.pairwise_migrations WHERE version = $1`, [
        PG_SCHEMA_VERSION,
      ]);
      await (await open()).close();
      const r = await c.query(`SELECT count(*)::int AS n FROM ${fresh}.dedup`);
      expect(r.rows[0]).toEqual({ n: 0 });
    } finally {
      await c.query(`DROP SCHEMA ${fresh} CASCADE`);
      await c.end();
    }
  });

  it("refuses an unreachable database with Unavailable", async () => {
    const err: unknown = await openPgServerStore({
      connectionString: "postgres://postgres@127.0.0.1:1/test",
      schema,
    }).catch((e: unknown) => e);
    expect(ServerError.is(err, "Unavailable")).toBe(true);
  });

  it("two nodes' pools cannot hand out more vault guesses than the limit together", async () => {
    const a = await openPgServerStore({
      connectionString: TEST_POSTGRES,
      schema,
      maxConnections: 4,
    });
    const b = await openPgServerStore({
      connectionString: TEST_POSTGRES,
      schema,
      maxConnections: 4,
    });
    const vaultId = `v-${randomBytes(6).toString("hex")}`;
    await a.createVaultRecord({
      vaultId,
      registrationRecord: "r",
      wrappedKey: new Uint8Array(40),
      now: 1,
    });
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        (i % 2 ? a : b).countVaultGuess({
          vaultId,
          maxGuesses: 10,
          now: 1,
          login: { loginId: `${vaultId}-${String(i)}`, state: "s", expiresAt: 100 },
        }),
      ),
    );
    expect(results.filter((r) => typeof r === "object")).toHaveLength(10);
    expect(results.filter((r) => r === "locked")).toHaveLength(20);
    await a.close();
    await b.close();
  });

  it("reports pool figures", async () => {
    const store = await openPgServerStore({
      connectionString: TEST_POSTGRES,
      schema,
      maxConnections: 3,
    });
    await store.ping();
    const stats = store.poolStats();
    expect(stats.max).toBe(3);
    expect(stats.total).toBeGreaterThanOrEqual(1);
    expect(stats.waiting).toBe(0);
    await store.close();
    expect(ServerError.is(await store.ping().catch((e: unknown) => e), "Unavailable")).toBe(true);
  });
});
