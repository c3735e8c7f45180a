import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openSqliteServerStore } from "./sqlite-server-store.ts";

const dir = mkdtempSync(join(tmpdir(), "pairwise-vault-store-"));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
const wrappedKey = new Uint8Array(60).fill(3);
let logins = 0;
const guess = (vaultId: string, maxGuesses: number, now = 1, ttl = 100) => ({
  vaultId,
  maxGuesses,
  now,
  login: { loginId: `l${String(++logins)}`, state: "s", expiresAt: now + ttl },
});

describe("SQLite backup key vault", () => {
  // The vault's behaviour on one store is in the storage contract suite (store-contract.ts);
  // this is what only SQLite's file sharing can show.
  it("two connections on one file cannot hand out more than the limit together", async () => {
    const path = join(dir, "c.db");
    const a = openSqliteServerStore({ path });
    const b = openSqliteServerStore({ path });
    await a.createVaultRecord({ vaultId: "v", registrationRecord: "r", wrappedKey, now: 1 });
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).countVaultGuess(guess("v", 10))),
    );
    const granted = results.filter((r) => typeof r === "object");
    expect(granted.length).toBe(10);
    expect(new Set(granted.map((r) => r.guesses)).size).toBe(10);
    expect(results.filter((r) => r === "locked").length).toBe(20);
    await a.close();
    await b.close();
  });
});
