import type { ServerStore } from "./server-store.ts";
import { bytes, type SqliteContext } from "./sqlite-context.ts";

type VaultMethods = Pick<
  ServerStore,
  | "createVaultRecord"
  | "getVaultRecord"
  | "countVaultGuess"
  | "takeVaultLogin"
  | "vaultLoginSucceeded"
  | "vaultLoginFailed"
  | "deleteVaultRecord"
>;

/**
 * The backup key vault of the SQLite store. A guess is counted by one conditional UPDATE inside
 * an IMMEDIATE transaction that also stores the started login, so concurrent guesses (even from
 * several server processes on one file) can neither pass the limit nor lose a counted guess.
 */
export function createSqliteVault(ctx: SqliteContext): VaultMethods {
  const { db, run } = ctx;
  const insert = db.prepare<[string, string, Uint8Array, number]>(
    "INSERT INTO backup_vault (vault_id, registration_record, wrapped_key, created_at) VALUES (?, ?, ?, ?)",
  );
  const read = db.prepare<[string], { registration_record: string; guesses: number }>(
    "SELECT registration_record, guesses FROM backup_vault WHERE vault_id = ?",
  );
  const count = db.prepare<[string, number], { guesses: number }>(
    "UPDATE backup_vault SET guesses = guesses + 1 WHERE vault_id = ? AND guesses < ? RETURNING guesses",
  );
  const putLogin = db.prepare<[string, string, string, number]>(
    "INSERT INTO backup_vault_logins (login_id, vault_id, state, expires_at) VALUES (?, ?, ?, ?)",
  );
  // Only once no started login could still succeed: the last counted guess keeps its chance.
  const exhausted = db.prepare<[string, number, string, number]>(
    `DELETE FROM backup_vault WHERE vault_id = ? AND guesses >= ? AND NOT EXISTS
       (SELECT 1 FROM backup_vault_logins WHERE vault_id = ? AND expires_at > ?)`,
  );
  const exists = db.prepare<[string], { one: number }>(
    "SELECT 1 AS one FROM backup_vault WHERE vault_id = ?",
  );
  const takeLogin = db.prepare<[string], { vault_id: string; state: string; expires_at: number }>(
    "DELETE FROM backup_vault_logins WHERE login_id = ? RETURNING vault_id, state, expires_at",
  );
  const dropExpired = db.prepare<[number]>("DELETE FROM backup_vault_logins WHERE expires_at <= ?");
  const succeeded = db.prepare<[string], { wrapped_key: Buffer }>(
    "UPDATE backup_vault SET guesses = 0 WHERE vault_id = ? RETURNING wrapped_key",
  );
  const remove = db.prepare<[string]>("DELETE FROM backup_vault WHERE vault_id = ?");

  const countGuess = db.transaction((input: Parameters<ServerStore["countVaultGuess"]>[0]) => {
    const row = count.get(input.vaultId, input.maxGuesses);
    if (row) {
      putLogin.run(input.login.loginId, input.vaultId, input.login.state, input.login.expiresAt);
      return { guesses: row.guesses };
    }
    if (!exists.get(input.vaultId)) return undefined;
    exhausted.run(input.vaultId, input.maxGuesses, input.vaultId, input.now);
    return "locked" as const;
  });

  return {
    createVaultRecord: (input) =>
      run(() => {
        insert.run(input.vaultId, input.registrationRecord, input.wrappedKey, input.now);
      }),
    getVaultRecord: (vaultId) =>
      run(() => {
        const row = read.get(vaultId);
        return row && { registrationRecord: row.registration_record, guesses: row.guesses };
      }),
    countVaultGuess: (input) => run(() => countGuess.immediate(input)),
    takeVaultLogin: (loginId, now) =>
      run(() => {
        const row = takeLogin.get(loginId);
        dropExpired.run(now);
        return row && row.expires_at > now
          ? { vaultId: row.vault_id, state: row.state }
          : undefined;
      }),
    vaultLoginSucceeded: (vaultId) =>
      run(() => {
        const row = succeeded.get(vaultId);
        return row && { wrappedKey: bytes(row.wrapped_key) };
      }),
    vaultLoginFailed: (vaultId, maxGuesses, now) =>
      run(() => exhausted.run(vaultId, maxGuesses, vaultId, now).changes === 1),
    deleteVaultRecord: (vaultId) => run(() => remove.run(vaultId).changes === 1),
  };
}
