import type Database from "better-sqlite3";
import type { Logger } from "pino";
import { ServerError } from "../errors.ts";

/**
 * The schema, as an append-only list of migrations: migration `i` takes the database from
 * `PRAGMA user_version` `i` to `i + 1`. Never edit a released entry; add a new one.
 *
 * Devices get an internal integer key (`dev`) that keys, queue rows and prekeys reference, so
 * those rows and their indexes carry 8 bytes instead of the account id. `dev` is AUTOINCREMENT
 * so a removed device's key is never handed to a later one. Queue `seq` is AUTOINCREMENT too:
 * one sequence for all queues, never reused after deletes, hence increasing per device.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE accounts (
    account_id TEXT PRIMARY KEY,
    account_key BLOB NOT NULL,
    signed_device_list BLOB NOT NULL,
    device_list_timestamp INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    -- Both only grow: a removed or abandoned device id or key index is never handed out again.
    next_device_id INTEGER NOT NULL,
    next_key_index INTEGER NOT NULL
  );

  CREATE TABLE devices (
    dev INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    device_id INTEGER NOT NULL,
    key_index INTEGER NOT NULL,
    registration_id INTEGER NOT NULL,
    identity_key BLOB NOT NULL,
    signed_device_identity BLOB NOT NULL,
    noise_key BLOB NOT NULL UNIQUE,
    name TEXT NOT NULL,
    platform TEXT NOT NULL,
    linked_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    UNIQUE (account_id, device_id)
  );
  CREATE INDEX devices_primary_last_seen ON devices (last_seen) WHERE device_id = 1;

  CREATE TABLE reservations (
    account_id TEXT NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    device_id INTEGER NOT NULL,
    key_index INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, device_id)
  ) WITHOUT ROWID;
  CREATE INDEX reservations_expiry ON reservations (expires_at);

  CREATE TABLE signed_prekeys (
    dev INTEGER PRIMARY KEY REFERENCES devices (dev) ON DELETE CASCADE,
    key_id INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    signature BLOB NOT NULL,
    uploaded_at INTEGER NOT NULL
  );

  CREATE TABLE prekeys (
    dev INTEGER NOT NULL REFERENCES devices (dev) ON DELETE CASCADE,
    key_id INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    PRIMARY KEY (dev, key_id)
  ) WITHOUT ROWID;

  -- Kyber keys are ~1.6 KB, too large for a WITHOUT ROWID table. One-time and last-resort keys
  -- live in separate id spaces, so an id collision can never turn the last resort into a one-time key.
  CREATE TABLE kyber_prekeys (
    id INTEGER PRIMARY KEY,
    dev INTEGER NOT NULL REFERENCES devices (dev) ON DELETE CASCADE,
    last_resort INTEGER NOT NULL CHECK (last_resort IN (0, 1)),
    key_id INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    signature BLOB NOT NULL,
    UNIQUE (dev, last_resort, key_id)
  );
  CREATE UNIQUE INDEX kyber_prekeys_one_last_resort ON kyber_prekeys (dev) WHERE last_resort = 1;

  CREATE TABLE queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dev INTEGER NOT NULL REFERENCES devices (dev) ON DELETE CASCADE,
    envelope BLOB NOT NULL,
    enqueued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  );
  CREATE INDEX queue_by_device ON queue (dev, seq);
  CREATE INDEX queue_by_expiry ON queue (expires_at);

  CREATE TABLE dedup (
    key TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX dedup_expiry ON dedup (expires_at);

  CREATE TABLE chat_groups (
    group_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );

  -- A rowid table so members come back in the order they were added.
  CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES chat_groups (group_id) ON DELETE CASCADE,
    member TEXT NOT NULL,
    UNIQUE (group_id, member)
  );

  CREATE TABLE blobs (
    blob_id TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );

  -- Only SHA-256 of each token: a copy of the database does not hand out usable invites.
  CREATE TABLE invites (
    token_hash BLOB PRIMARY KEY,
    created_at INTEGER NOT NULL,
    used_at INTEGER
  ) WITHOUT ROWID;
  `,
  `
  -- Backup key vault: an OPAQUE registration record and the backup key wrapped under a key the
  -- client derives from its OPAQUE export key. guesses counts logins started since the last
  -- successful one; the record is deleted once it reaches the limit.
  CREATE TABLE backup_vault (
    vault_id TEXT PRIMARY KEY,
    registration_record TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    guesses INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE backup_vault_logins (
    login_id TEXT PRIMARY KEY,
    vault_id TEXT NOT NULL REFERENCES backup_vault (vault_id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    expires_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX backup_vault_logins_vault ON backup_vault_logins (vault_id);
  `,
  `
  -- Expiry walks the queue in seq order and the dedup keys in key order (see sqlite-queue.ts):
  -- these two indexes cost every submission two more b-tree inserts and every ack one more
  -- delete (about a tenth of the relay's time per message) for a sweep that runs once a minute.
  DROP INDEX queue_by_expiry;
  DROP INDEX dedup_expiry;

  -- Where each expiry walk stopped (a seq, a dedup key), so that a server restarted more often
  -- than a walk of a large table takes still reaches its end.
  CREATE TABLE sweep_cursors (
    name TEXT PRIMARY KEY,
    -- No declared type: no affinity, a seq stays a number and a key stays text.
    position NOT NULL
  ) WITHOUT ROWID;
  `,
  `
  -- Dedup keys are digests now (dedup-key.ts), not the sender and message id in the clear.
  -- Every key so far is a clear one: they all go at once, their pages overwritten with zeros
  -- (secure_delete), and so does the expiry walk's cursor, which holds one. A resubmission of a
  -- message sent before this version is stored again; its recipients drop it by its message id.
  PRAGMA secure_delete = ON;
  DELETE FROM dedup;
  DELETE FROM sweep_cursors WHERE name = 'dedup';
  PRAGMA secure_delete = OFF;
  `,
];

/** The schema version this code writes. */
export const SQLITE_SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Brings the database up to {@link SQLITE_SCHEMA_VERSION}, one transaction per migration, so a
 * crash mid-migration leaves the previous version intact. Throws `ServerError("Internal")` for
 * a database written by a newer version of the server.
 */
export function migrate(db: Database.Database, logger?: Logger): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > SQLITE_SCHEMA_VERSION) {
    throw new ServerError("Internal", "database was written by a newer server version");
  }
  for (let version = current; version < SQLITE_SCHEMA_VERSION; version++) {
    const sql = MIGRATIONS[version] ?? "";
    db.transaction(() => {
      db.exec(sql);
      // user_version lives in the database header and is written inside the transaction.
      db.pragma(`user_version = ${version + 1}`);
    })();
    logger?.info({ from: version, to: version + 1 }, "server database migrated");
  }
}
