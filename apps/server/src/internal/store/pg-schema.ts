import type { Pool } from "pg";
import type { Logger } from "pino";
import { ServerError } from "../errors.ts";

/**
 * The PostgreSQL schema, as an append-only list of migrations recorded in `pairwise_migrations`.
 * It mirrors the SQLite schema (sqlite-schema.ts): devices get an internal `dev` key that keys,
 * queue rows and prekeys reference; `dev` and the queue `seq` come from sequences, so neither is
 * ever handed out twice (a device's queue seqs only grow, across every node). Never edit a
 * released entry; add a new one.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE accounts (
    account_id TEXT PRIMARY KEY,
    account_key BYTEA NOT NULL,
    signed_device_list BYTEA NOT NULL,
    device_list_timestamp BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    next_device_id INTEGER NOT NULL,
    next_key_index INTEGER NOT NULL
  );

  CREATE TABLE devices (
    dev BIGSERIAL PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    device_id INTEGER NOT NULL,
    key_index INTEGER NOT NULL,
    registration_id INTEGER NOT NULL,
    identity_key BYTEA NOT NULL,
    signed_device_identity BYTEA NOT NULL,
    noise_key BYTEA NOT NULL UNIQUE,
    name TEXT NOT NULL,
    platform TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    UNIQUE (account_id, device_id)
  );
  CREATE INDEX devices_primary_last_seen ON devices (last_seen) WHERE device_id = 1;

  CREATE TABLE reservations (
    account_id TEXT NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    device_id INTEGER NOT NULL,
    key_index INTEGER NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_id)
  );
  CREATE INDEX reservations_expiry ON reservations (expires_at);

  CREATE TABLE signed_prekeys (
    dev BIGINT PRIMARY KEY REFERENCES devices (dev) ON DELETE CASCADE,
    key_id INTEGER NOT NULL,
    public_key BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    uploaded_at BIGINT NOT NULL
  );

  CREATE TABLE prekeys (
    dev BIGINT NOT NULL REFERENCES devices (dev) ON DELETE CASCADE,
    key_id INTEGER NOT NULL,
    public_key BYTEA NOT NULL,
    PRIMARY KEY (dev, key_id)
  );

  CREATE TABLE kyber_prekeys (
    id BIGSERIAL PRIMARY KEY,
    dev BIGINT NOT NULL REFERENCES devices (dev) ON DELETE CASCADE,
    last_resort BOOLEAN NOT NULL,
    key_id INTEGER NOT NULL,
    public_key BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    UNIQUE (dev, last_resort, key_id)
  );
  CREATE UNIQUE INDEX kyber_prekeys_one_last_resort ON kyber_prekeys (dev) WHERE last_resort;

  CREATE TABLE queue (
    seq BIGSERIAL PRIMARY KEY,
    dev BIGINT NOT NULL REFERENCES devices (dev) ON DELETE CASCADE,
    envelope BYTEA NOT NULL,
    enqueued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
  );
  CREATE INDEX queue_by_device ON queue (dev, seq);
  CREATE INDEX queue_by_expiry ON queue (expires_at);

  CREATE TABLE dedup (
    key TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
  );
  CREATE INDEX dedup_expiry ON dedup (expires_at);

  CREATE TABLE chat_groups (
    group_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
  );

  -- pos keeps members in the order they were added.
  CREATE TABLE group_members (
    pos BIGSERIAL PRIMARY KEY,
    group_id TEXT NOT NULL REFERENCES chat_groups (group_id) ON DELETE CASCADE,
    member TEXT NOT NULL,
    UNIQUE (group_id, member)
  );

  CREATE TABLE blobs (
    blob_id TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    sha256 BYTEA NOT NULL,
    owner TEXT NOT NULL,
    created_at BIGINT NOT NULL
  );

  CREATE TABLE invites (
    token_hash BYTEA PRIMARY KEY,
    created_at BIGINT NOT NULL,
    used_at BIGINT
  );
  `,
  `
  CREATE TABLE backup_vault (
    vault_id TEXT PRIMARY KEY,
    registration_record TEXT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    guesses INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
  );

  CREATE TABLE backup_vault_logins (
    login_id TEXT PRIMARY KEY,
    vault_id TEXT NOT NULL REFERENCES backup_vault (vault_id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL
  );
  CREATE INDEX backup_vault_logins_vault ON backup_vault_logins (vault_id);
  `,
  `
  -- Dedup keys are digests now (dedup-key.ts), not the sender and message id in the clear.
  -- Every key so far is a clear one: TRUNCATE drops them with the table's files (a DELETE would
  -- leave them in dead rows until a VACUUM). A resubmission of a message sent before this
  -- version is stored again; its recipients drop it by its message id. Nodes still running the
  -- version before keep writing clear keys until they are upgraded too.
  TRUNCATE dedup;
  `,
];

/** The schema version this code writes. */
export const PG_SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Brings the database's schema (in `schema`) up to {@link PG_SCHEMA_VERSION}. Several nodes may
 * start at once: an advisory lock lets one migrate while the others wait, and each migration runs
 * in its own transaction. A database written by a newer version is refused with "Internal".
 */
export async function migratePg(pool: Pool, schema: string, logger?: Logger): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock(hashtext($1))", [`pairwise-migrate:${schema}`]);
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS pairwise_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`,
      );
      const row = await client.query<{ v: number | null }>(
        "SELECT max(version) AS v FROM pairwise_migrations",
      );
      const current = row.rows[0]?.v ?? 0;
      if (current > MIGRATIONS.length) {
        throw new ServerError("Internal", "the database was written by a newer server version");
      }
      for (let version = current; version < MIGRATIONS.length; version++) {
        await client.query("BEGIN");
        try {
          await client.query(MIGRATIONS[version] ?? "");
          await client.query("INSERT INTO pairwise_migrations VALUES ($1, $2)", [
            version + 1,
            Date.now(),
          ]);
          await client.query("COMMIT");
        } catch (err) {
          await client.query("ROLLBACK");
          throw err;
        }
        logger?.info({ version: version + 1 }, "database migrated");
      }
    } finally {
      await client.query("SELECT pg_advisory_unlock(hashtext($1))", [`pairwise-migrate:${schema}`]);
    }
  } finally {
    client.release();
  }
}

/** Quotes a schema name for SQL (letters, digits and underscores only are accepted). */
export function quoteIdent(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) {
    throw new ServerError("InvalidRequest", "schema name must be letters, digits and underscores");
  }
  return `"${name}"`;
}
