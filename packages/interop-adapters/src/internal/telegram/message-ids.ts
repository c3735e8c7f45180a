import Database from "better-sqlite3";
import { InteropError } from "../errors.ts";

/**
 * The message ids a bridge matched across, both ways (`p:<pairwise id>` ↔ `t:<chat>:<telegram
 * id>`), so that a reply on one side keeps its reference on the other. Only the most recent
 * pairs are kept: a reply to an older message crosses without its reference.
 */
export interface MessageIdMap {
  get(key: string): string | undefined;
  /** Records `a` ↔ `b`. */
  link(a: string, b: string): void;
  close(): void;
}

/** Pairs kept in memory at most. */
const MEMORY_PAIRS = 10_000;
/** Pairs kept in a file at most. */
const FILE_PAIRS = 200_000;
/** Links between two prunes of the file. */
const PRUNE_EVERY = 1000;

/** A {@link MessageIdMap} in memory: the most recent `pairs` pairs, gone with the process. */
export function memoryMessageIds(pairs = MEMORY_PAIRS): MessageIdMap {
  const ids = new Map<string, string>();
  return {
    get: (key) => ids.get(key),
    link(a, b) {
      ids.set(a, b);
      ids.set(b, a);
      // A Map iterates in insertion order: the first keys are the oldest.
      for (const key of ids.keys()) {
        if (ids.size <= pairs * 2) break;
        ids.delete(key);
      }
    },
    close() {
      ids.clear();
    },
  };
}

/**
 * A {@link MessageIdMap} in a SQLite file (created if missing): the most recent `pairs` pairs,
 * kept across restarts. Throws `InteropError("InvalidArgument")` if the file cannot be opened.
 */
export function fileMessageIds(path: string, pairs = FILE_PAIRS): MessageIdMap {
  let db: Database.Database | undefined;
  try {
    db = new Database(path);
    db.pragma("journal_mode = WAL");
    db.exec(`
      CREATE TABLE IF NOT EXISTS message_ids (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        -- Increases with every link: what pruning keeps the most recent of.
        n INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS message_ids_n ON message_ids (n);
    `);
  } catch (cause) {
    if (db?.open) db.close();
    throw new InteropError("InvalidArgument", "cannot open the bridge's message id file", {
      cause,
    });
  }
  const opened = db;
  const get = opened.prepare<[string], { value: string }>(
    "SELECT value FROM message_ids WHERE key = ?",
  );
  const put = opened.prepare<[string, string, number]>(
    "INSERT OR REPLACE INTO message_ids (key, value, n) VALUES (?, ?, ?)",
  );
  const prune = opened.prepare<[number]>("DELETE FROM message_ids WHERE n <= ?");
  let n =
    (opened.prepare("SELECT max(n) AS n FROM message_ids").get() as { n: number | null }).n ?? 0;
  const link = opened.transaction((a: string, b: string) => {
    n++;
    put.run(a, b, n);
    put.run(b, a, n);
    if (n % PRUNE_EVERY === 0) prune.run(n - pairs);
  });
  return {
    get: (key) => get.get(key)?.value,
    link: (a, b) => {
      link(a, b);
    },
    close() {
      if (opened.open) opened.close();
    },
  };
}
