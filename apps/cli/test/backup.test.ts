// `pairwise backup` as a user drives it: real CLI processes, a real relay process (its backup
// key vault too), backups on disk.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshHome, removeHomes, runCli, spawnCli, type CliExit } from "./fixtures/cli-process.ts";
import { startServerProcess, type ServerProcess } from "./fixtures/server-process.ts";

let server: ServerProcess;
const store = mkdtempSync(join(tmpdir(), "pairwise-cli-backups-"));
const dest = `fs:${store}`;
const homes = {
  alice: freshHome("alice"),
  bob: freshHome("bob"),
  newPhone: freshHome("new-phone"),
  other: freshHome("other"),
};
type Who = keyof typeof homes;
const as = (who: Who, ...args: string[]) =>
  runCli(["--home", homes[who], "--timeout", "10", ...args]);
const withInput = (who: Who, input: string, ...args: string[]) =>
  spawnCli(["--home", homes[who], "--timeout", "10", ...args], 120_000, input).exited;

function ok(run: CliExit): unknown {
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
  return JSON.parse(run.stdout);
}

beforeAll(async () => {
  server = await startServerProcess();
});
afterAll(async () => {
  await server.stop();
  removeHomes();
  rmSync(store, { recursive: true, force: true });
});

describe("pairwise backup", () => {
  let recoveryKey = "";

  it("backs up history to disk and restores it onto a newly registered device", async () => {
    ok(await as("alice", "register", "--server", server.url, "--name", "alice", "--json"));
    ok(await as("bob", "register", "--server", server.url, "--name", "bob", "--json"));
    ok(await as("bob", "send", "alice", "the secret plan", "--json"));
    ok(await as("alice", "receive", "--json"));
    ok(await as("alice", "send", "bob", "got it", "--json"));

    const created = ok(await as("alice", "backup", "create", "--to", dest, "--json")) as {
      backup: string;
      sequence: number;
      recoveryKey: string;
    };
    expect(created.sequence).toBe(1);
    expect(created.recoveryKey).toMatch(/^([0-9a-f]{4} ){15}[0-9a-f]{4}$/);
    recoveryKey = created.recoveryKey;
    // The stored bytes never contain the plaintext.
    const dir = join(store, "pairwise-backup", created.backup);
    for (const f of readdirSync(dir)) {
      expect(readFileSync(join(dir, f)).includes(Buffer.from("secret plan"))).toBe(false);
    }
    const second = ok(await as("alice", "backup", "create", "--to", dest, "--json")) as {
      sequence: number;
      recoveryKey?: string;
    };
    expect(second.sequence).toBe(2);
    expect(second.recoveryKey).toBeUndefined();
    const list = ok(await as("alice", "backup", "list", "--from", dest, "--json")) as Array<{
      sequence: number;
      complete: boolean;
    }>;
    expect(list.map((b) => [b.sequence, b.complete])).toEqual([
      [2, true],
      [1, true],
    ]);

    ok(await as("newPhone", "register", "--server", server.url, "--name", "alice-new", "--json"));
    // Typed sloppily: upper case, no spaces.
    const typed = `${recoveryKey.replace(/ /g, "").toUpperCase()}\n`;
    const restored = ok(
      await withInput(
        "newPhone",
        typed,
        "backup",
        "restore",
        "--from",
        dest,
        "--recovery-key-stdin",
        "--json",
      ),
    ) as { imported: number };
    expect(restored.imported).toBeGreaterThan(0);
    // The new device goes on with the same recovery key and the next sequence number.
    const keys = ok(await as("newPhone", "backup", "keys", "show", "--json")) as {
      recoveryKey: string;
    };
    expect(keys.recoveryKey).toBe(recoveryKey);
    const history = (await as("newPhone", "history", "bob", "--json")).stdout;
    expect(history).toContain("the secret plan");
    expect(history).toContain("got it");
  });

  it("refuses a wrong recovery key and a tampered backup, restoring nothing", async () => {
    ok(await as("other", "register", "--server", server.url, "--name", "carol", "--json"));
    const wrong = await withInput(
      "other",
      `${"0123".repeat(16)}\n`,
      "backup",
      "restore",
      "--from",
      dest,
      "--recovery-key-stdin",
    );
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toBe(
      "pairwise: this recovery key, password or passkey does not unlock the backup\n",
    );
    const [latest] = ok(await as("alice", "backup", "list", "--from", dest, "--json")) as Array<{
      id: string;
    }>;
    const part = join(store, "pairwise-backup", latest?.id ?? "", "part-000000");
    const bytes = readFileSync(part);
    bytes[bytes.length - 5] = (bytes[bytes.length - 5] ?? 0) ^ 1;
    writeFileSync(part, bytes);
    const tampered = await withInput(
      "other",
      `${recoveryKey}\n`,
      "backup",
      "restore",
      "--from",
      dest,
      "--recovery-key-stdin",
    );
    expect(tampered.code).toBe(1);
    expect(tampered.stderr).toBe(
      "pairwise: the backup has been modified or damaged; nothing was restored\n",
    );
    expect(JSON.parse((await as("other", "history", "bob", "--json")).stdout || "[]")).toEqual([]);
    expect(recoveryKey).not.toBe("");
    expect(wrong.stderr + tampered.stderr).not.toContain(recoveryKey);
  });

  it("adds a password slot at the relay's vault and restores with the password", async () => {
    const vault = server.url.replace(/^ws:/, "http:");
    ok(
      await withInput(
        "alice",
        "hunter2 but longer\n",
        "backup",
        "keys",
        "add-password",
        "--vault",
        vault,
        "--password-stdin",
        "--json",
      ),
    );
    const shown = ok(await as("alice", "backup", "keys", "show", "--json")) as {
      recoveryKey: string;
      slots: Array<{ kind: string }>;
    };
    expect(shown.recoveryKey).toBe(recoveryKey);
    expect(shown.slots.map((s) => s.kind)).toEqual(["recovery", "password"]);
    ok(await as("alice", "backup", "create", "--to", dest, "--json"));
    const wrong = await withInput(
      "other",
      "hunter3\n",
      "backup",
      "restore",
      "--from",
      dest,
      "--password-stdin",
    );
    expect(wrong.code).toBe(1);
    const restored = ok(
      await withInput(
        "other",
        "hunter2 but longer\n",
        "backup",
        "restore",
        "--from",
        dest,
        "--password-stdin",
        "--json",
      ),
    ) as { imported: number };
    expect(restored.imported).toBeGreaterThan(0);
    expect((await as("other", "history", "bob", "--json")).stdout).toContain("the secret plan");
  });

  it("explains bad destinations as usage errors", async () => {
    const bad = await as("alice", "backup", "create", "--to", "ftp://x");
    expect(bad.code).toBe(2);
    const gdrive = await as("alice", "backup", "list", "--from", "gdrive");
    expect(gdrive.code).toBe(2);
    expect(gdrive.stderr).toContain("PAIRWISE_GDRIVE_TOKEN");
  });
});
