import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { BotHostError } from "./errors.ts";

/** How long handled-message ids are kept: the relay keeps undelivered mail at most 30 days. */
const HANDLED_TTL_MS = 31 * 24 * 60 * 60 * 1000;

/**
 * A bot's own SQLite database (`bot.db` in its state directory): which messages were handled
 * (idempotency by message id), effects of a handling in progress (so a re-run after a crash does
 * not repeat a reply), per-chat plugin sessions and small metadata. Every write is a transaction.
 */
export class BotStore {
  private readonly db: Database.Database;
  private readonly stmts;

  private constructor(db: Database.Database) {
    this.db = db;
    // One bot process owns its state directory, as one process owns a device's database: the
    // exclusive lock (taken before the first read) refuses a second host on the same directory
    // and keeps WAL's index in memory, with no file-lock calls per transaction.
    db.pragma("locking_mode = EXCLUSIVE");
    db.pragma("journal_mode = WAL");
    // NORMAL in WAL mode survives a killed process (what at-least-once handling relies on), like
    // the device database; FULL would also survive power loss at an fsync per commit.
    db.pragma("synchronous = NORMAL");
    // Small page cache: a host runs many bots and most of them are idle.
    db.pragma("cache_size = -64");
    db.exec(`
      CREATE TABLE IF NOT EXISTS handled (id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS effects (
        message TEXT NOT NULL, n INTEGER NOT NULL, result TEXT NOT NULL,
        PRIMARY KEY (message, n)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS sessions (
        chat TEXT NOT NULL, scope TEXT NOT NULL, data TEXT NOT NULL,
        PRIMARY KEY (chat, scope)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    `);
    this.stmts = {
      wasHandled: db.prepare<[string], { one: number }>(
        "SELECT 1 AS one FROM handled WHERE id = ?",
      ),
      markHandled: db.prepare<[string, number]>(
        "INSERT OR IGNORE INTO handled (id, at) VALUES (?, ?)",
      ),
      effect: db.prepare<[string, number], { result: string }>(
        "SELECT result FROM effects WHERE message = ? AND n = ?",
      ),
      putEffect: db.prepare<[string, number, string]>(
        "INSERT OR REPLACE INTO effects (message, n, result) VALUES (?, ?, ?)",
      ),
      dropEffects: db.prepare<[string]>("DELETE FROM effects WHERE message = ?"),
      session: db.prepare<[string, string], { data: string }>(
        "SELECT data FROM sessions WHERE chat = ? AND scope = ?",
      ),
      putSession: db.prepare<[string, string, string]>(
        "INSERT OR REPLACE INTO sessions (chat, scope, data) VALUES (?, ?, ?)",
      ),
      meta: db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?"),
      putMeta: db.prepare<[string, string]>(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
      ),
      prune: db.prepare<[number]>("DELETE FROM handled WHERE at < ?"),
      count: db.prepare<[], { n: number }>("SELECT count(*) AS n FROM handled"),
    };
  }

  /** Opens (creating) `dir/bot.db`. Throws `BotHostError("StorageFailure")`. */
  static open(dir: string): BotStore {
    let db: Database.Database | undefined;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      // Another process holds an exclusive lock for as long as it runs: waiting better-sqlite3's
      // default 5 s (synchronously, the whole host stalled) would not get it. A short wait covers
      // a process that is just exiting.
      db = new Database(join(dir, "bot.db"), { timeout: 100 });
      return new BotStore(db);
    } catch (cause) {
      if (db?.open) db.close();
      const inUse = (cause as { code?: unknown }).code === "SQLITE_BUSY";
      throw new BotHostError(
        "StorageFailure",
        inUse
          ? `the bot database in ${dir} is in use by another process`
          : `cannot open the bot database in ${dir}`,
        { cause },
      );
    }
  }

  /** Key of a message for idempotency: message ids are unique per sender. */
  static key(fromAccount: string, id: string): string {
    return `${fromAccount}\u0000${id}`;
  }

  wasHandled(key: string): boolean {
    return this.stmts.wasHandled.get(key) !== undefined;
  }

  /** The recorded result of effect `n` of a handling in progress. */
  effect(key: string, n: number): unknown {
    const row = this.stmts.effect.get(key, n);
    return row ? (JSON.parse(row.result) as unknown) : undefined;
  }

  putEffect(key: string, n: number, result: unknown): void {
    this.stmts.putEffect.run(key, n, JSON.stringify(result ?? null));
  }

  session(chat: string, scope: string): Record<string, unknown> {
    const row = this.stmts.session.get(chat, scope);
    if (!row) return {};
    const v = JSON.parse(row.data) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : {};
  }

  /**
   * Completes a handling in one transaction: the message is marked handled, its effect log
   * dropped and the sessions it touched saved.
   */
  complete(
    key: string,
    at: number,
    sessions: ReadonlyArray<{ chat: string; scope: string; data: Record<string, unknown> }>,
  ): void {
    this.db.transaction(() => {
      for (const s of sessions) this.stmts.putSession.run(s.chat, s.scope, JSON.stringify(s.data));
      this.stmts.markHandled.run(key, at);
      this.stmts.dropEffects.run(key);
    })();
  }

  meta(key: string): string | undefined {
    return this.stmts.meta.get(key)?.value;
  }

  setMeta(key: string, value: string): void {
    this.stmts.putMeta.run(key, value);
  }

  /** Forgets handled ids older than the relay could still redeliver. */
  prune(now: number): void {
    this.stmts.prune.run(now - HANDLED_TTL_MS);
  }

  /** How many handled ids are kept. */
  handledCount(): number {
    return this.stmts.count.get()?.n ?? 0;
  }

  close(): void {
    this.db.close();
  }
}
