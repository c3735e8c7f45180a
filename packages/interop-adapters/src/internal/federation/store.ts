import Database from "better-sqlite3";
import { InteropError } from "../errors.ts";
import type { GroupPolicy } from "../privacy.ts";

/** A user's stored privacy settings (defaults: no provider, groups from contacts). */
export interface PrivacyRecord {
  providers: string[];
  groups: GroupPolicy;
}

/** One message waiting for a partner that was down. */
export interface OutboundItem {
  seq: number;
  partner: string;
  /** FedDeliver bytes: ciphertexts and routing only. */
  body: Uint8Array;
}

/**
 * What federation keeps durably beside the relay's store: users' third-party privacy settings,
 * the remote users each user has written to ("contacts" for the group policy), and a durable
 * outbound queue per partner.
 */
export interface FederationStore {
  getPrivacy(accountId: string): PrivacyRecord;
  setPrivacy(accountId: string, record: PrivacyRecord): void;
  addContact(accountId: string, remote: string): void;
  isContact(accountId: string, remote: string): boolean;
  /** Durably queues a delivery for a partner; returns its sequence number. */
  enqueueOutbound(partner: string, body: Uint8Array, now: number): number;
  /** The oldest queued deliveries for a partner. */
  listOutbound(partner: string, limit: number): OutboundItem[];
  removeOutbound(seq: number): void;
  countOutbound(partner: string): number;
  /** Remembers which partner hosts a group a local user belongs to (the first one told wins). */
  setGroupHost(groupId: string, partner: string): void;
  /** The partner hosting a group, if a partner told this provider of it. */
  groupHost(groupId: string): string | undefined;
  close(): void;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS interop_privacy (
    account_id TEXT PRIMARY KEY,
    providers TEXT NOT NULL,
    groups_policy TEXT NOT NULL
  );
  CREATE TABLE IF NOT EXISTS interop_contacts (
    account_id TEXT NOT NULL,
    remote TEXT NOT NULL,
    PRIMARY KEY (account_id, remote)
  );
  CREATE TABLE IF NOT EXISTS interop_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    partner TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS interop_group_hosts (
    group_id TEXT PRIMARY KEY,
    partner TEXT NOT NULL
  );
  CREATE INDEX IF NOT EXISTS interop_outbox_partner ON interop_outbox (partner, seq);
`;

/** Opens (creating if needed) the federation store in a SQLite file (WAL). */
export function openSqliteFederationStore(path: string): FederationStore {
  let db: Database.Database;
  try {
    db = new Database(path);
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.exec(SCHEMA);
  } catch (cause) {
    throw new InteropError("InvalidArgument", "cannot open the federation store", { cause });
  }
  const getPrivacy = db.prepare<[string], { providers: string; groups_policy: string }>(
    "SELECT providers, groups_policy FROM interop_privacy WHERE account_id = ?",
  );
  const putPrivacy = db.prepare(
    `INSERT INTO interop_privacy (account_id, providers, groups_policy) VALUES (?, ?, ?)
     ON CONFLICT (account_id) DO UPDATE SET providers = excluded.providers,
       groups_policy = excluded.groups_policy`,
  );
  const addContact = db.prepare(
    "INSERT OR IGNORE INTO interop_contacts (account_id, remote) VALUES (?, ?)",
  );
  const isContact = db.prepare<[string, string], { one: number }>(
    "SELECT 1 AS one FROM interop_contacts WHERE account_id = ? AND remote = ?",
  );
  const enqueue = db.prepare(
    "INSERT INTO interop_outbox (partner, body, created_at) VALUES (?, ?, ?)",
  );
  const list = db.prepare<[string, number], { seq: number; partner: string; body: Buffer }>(
    "SELECT seq, partner, body FROM interop_outbox WHERE partner = ? ORDER BY seq LIMIT ?",
  );
  const remove = db.prepare("DELETE FROM interop_outbox WHERE seq = ?");
  const count = db.prepare<[string], { n: number }>(
    "SELECT COUNT(*) AS n FROM interop_outbox WHERE partner = ?",
  );
  const setHost = db.prepare(
    "INSERT OR IGNORE INTO interop_group_hosts (group_id, partner) VALUES (?, ?)",
  );
  const getHost = db.prepare<[string], { partner: string }>(
    "SELECT partner FROM interop_group_hosts WHERE group_id = ?",
  );
  return {
    getPrivacy(accountId) {
      const row = getPrivacy.get(accountId);
      if (!row) return { providers: [], groups: "contacts" };
      return {
        providers: JSON.parse(row.providers) as string[],
        groups: row.groups_policy as GroupPolicy,
      };
    },
    setPrivacy(accountId, record) {
      putPrivacy.run(
        accountId,
        JSON.stringify([...new Set(record.providers)].sort()),
        record.groups,
      );
    },
    addContact(accountId, remote) {
      addContact.run(accountId, remote);
    },
    isContact(accountId, remote) {
      return isContact.get(accountId, remote) !== undefined;
    },
    enqueueOutbound(partner, body, now) {
      return Number(enqueue.run(partner, Buffer.from(body), now).lastInsertRowid);
    },
    listOutbound(partner, limit) {
      return list.all(partner, limit).map((r) => ({
        seq: r.seq,
        partner: r.partner,
        body: new Uint8Array(r.body),
      }));
    },
    removeOutbound(seq) {
      remove.run(seq);
    },
    countOutbound(partner) {
      return count.get(partner)?.n ?? 0;
    },
    setGroupHost(groupId, partner) {
      setHost.run(groupId, partner);
    },
    groupHost(groupId) {
      return getHost.get(groupId)?.partner;
    },
    close() {
      db.close();
    },
  };
}
