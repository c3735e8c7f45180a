import Database from "better-sqlite3";
import { ServerError } from "../errors.ts";

/** SQLite result codes that mean "the database cannot serve right now", not "your request is wrong". */
const UNAVAILABLE = new Set([
  "SQLITE_BUSY",
  "SQLITE_LOCKED",
  "SQLITE_IOERR",
  "SQLITE_FULL",
  "SQLITE_CANTOPEN",
  "SQLITE_READONLY",
  "SQLITE_NOMEM",
  "SQLITE_PROTOCOL",
  "SQLITE_CORRUPT",
  "SQLITE_NOTADB",
]);

/**
 * Turns anything a SQLite call threw into a `ServerError` with a fixed message. SQLite's own
 * messages name tables and columns, never bound values, so they are kept only as `cause`.
 * `ServerError`s thrown on purpose inside a transaction pass through unchanged.
 */
export function toServerError(err: unknown, db: Database.Database): ServerError {
  if (ServerError.is(err)) return err;
  if (!db.open) return new ServerError("Unavailable", "database is closed", { cause: err });
  if (err instanceof Database.SqliteError) {
    const code = err.code;
    if (code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY")
      return new ServerError("Conflict", "already exists", { cause: err });
    if (code === "SQLITE_CONSTRAINT_FOREIGNKEY")
      return new ServerError("NotFound", "referenced record does not exist", { cause: err });
    if (code.startsWith("SQLITE_CONSTRAINT"))
      return new ServerError("InvalidRequest", "value violates a constraint", { cause: err });
    // Extended codes (SQLITE_IOERR_SHORT_READ) share their primary code's first two parts.
    if (UNAVAILABLE.has(code.split("_").slice(0, 2).join("_")))
      return new ServerError("Unavailable", "database unavailable", { cause: err });
  }
  return new ServerError("Internal", "database operation failed", { cause: err });
}
