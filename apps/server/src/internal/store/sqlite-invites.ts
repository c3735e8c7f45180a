import { createHash } from "node:crypto";
import type { ServerStore } from "./server-store.ts";
import type { SqliteContext } from "./sqlite-context.ts";

type InviteMethods = Pick<ServerStore, "addInvite" | "useInvite">;

const hash = (token: string) => createHash("sha256").update(token, "utf8").digest();

/** Invite tokens of the SQLite store, kept as SHA-256 hashes and usable once. */
export function createSqliteInvites(ctx: SqliteContext): InviteMethods {
  const { db, run } = ctx;
  const insert = db.prepare<[Uint8Array, number]>(
    "INSERT INTO invites (token_hash, created_at) VALUES (?, ?)",
  );
  const use = db.prepare<[number, Uint8Array]>(
    "UPDATE invites SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
  );
  return {
    addInvite: (token, now) =>
      run(() => {
        insert.run(hash(token), now);
      }),
    // One conditional UPDATE: two concurrent uses cannot both succeed.
    useInvite: (token, now) => run(() => use.run(now, hash(token)).changes === 1),
  };
}
