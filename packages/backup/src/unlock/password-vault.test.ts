import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as opaque from "@serenity-kit/opaque";
import { resolveConfig, startServer, type RunningServer } from "@pairwise/server";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFsProvider } from "../providers/fs.ts";
import { createBackup } from "../internal/create-backup.ts";
import { BackupError } from "../internal/errors.ts";
import { createKeyring, removeSlots, type BackupKeyring } from "../internal/keyring.ts";
import type { PasswordSlot } from "../internal/key-slots.ts";
import { restoreBackup, type RestoreSink } from "../internal/restore-backup.ts";
import type { BackupRecord } from "../internal/records.ts";
import { createPasswordOpener, deletePasswordRecord, enrolPassword } from "./password-vault.ts";

let dir: string;
let servers: RunningServer[] = [];
const httpUrl = (s: { url: string }) => s.url.replace(/^ws:/, "http:");

const repoRoot = join(import.meta.dirname, "../../../..");
const children: ChildProcess[] = [];

/** `pairwise-server --data DIR --port 0` as its own process; resolves with its ws:// URL. */
async function serverProcess(dataDir: string): Promise<{ url: string }> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(repoRoot, "apps/server/src/cli.ts"), "--data", dataDir, "--port", "0"],
    { cwd: repoRoot, stdio: ["ignore", "pipe", "inherit"] },
  );
  children.push(child);
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("server process did not start")), 30_000);
    child.stdout.setEncoding("utf8").on("data", (c: string) => {
      out += c;
      const m = /listening on (ws:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once("exit", () => reject(new Error("server process exited")));
  });
  return { url };
}

async function start(dataDir: string): Promise<RunningServer> {
  const server = await startServer({
    config: resolveConfig({ dataDir, host: "127.0.0.1", port: 0, logLevel: "silent" }),
    logger: pino({ level: "silent" }),
  });
  servers.push(server);
  return server;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pw-vault-"));
});
afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
  await rm(dir, { recursive: true, force: true });
});

function collect(): RestoreSink & { records: BackupRecord[]; committed: boolean } {
  const sink = {
    records: [] as BackupRecord[],
    committed: false,
    put: (r: BackupRecord) => void sink.records.push(r),
    commit: () => void (sink.committed = true),
    abort: () => void (sink.records = []),
  };
  return sink;
}

const slotOf = (k: BackupKeyring) => k.slots.find((s): s is PasswordSlot => s.kind === "password");

describe("password slot against the server's OPAQUE vault", () => {
  it("restores with the right password, refuses a wrong one, and can delete its record", async () => {
    const server = await start(join(dir, "one"));
    const keyring = await enrolPassword({
      keyring: createKeyring(),
      vaultUrl: httpUrl(server),
      password: "correct horse battery staple",
    });
    const provider = createFsProvider({ dir: join(dir, "backups") });
    const records = [{ table: "app", key: "msg|x", value: new TextEncoder().encode("hello") }];
    await createBackup({ provider, keyring, records, sequence: 1 });

    const openPasswordSlot = createPasswordOpener();
    const sink = collect();
    await restoreBackup({
      provider,
      unlock: { password: "correct horse battery staple", openPasswordSlot },
      sink,
    });
    expect(sink.committed).toBe(true);
    expect(new TextDecoder().decode(sink.records[0]?.value)).toBe("hello");

    const wrong = collect();
    const err: unknown = await restoreBackup({
      provider,
      unlock: { password: "Tr0ub4dor&3", openPasswordSlot },
      sink: wrong,
    }).catch((e: unknown) => e);
    expect(BackupError.is(err, "WrongKey")).toBe(true);
    expect(wrong.committed).toBe(false);

    const slot = slotOf(keyring);
    if (!slot) throw new Error("no password slot");
    await deletePasswordRecord(slot, "correct horse battery staple");
    const gone: unknown = await openPasswordSlot(slot, "correct horse battery staple").catch(
      (e: unknown) => e,
    );
    expect(BackupError.is(gone, "VaultRefused")).toBe(true);
    expect(removeSlots(keyring, { password: true }).slots.map((s) => s.kind)).toEqual(["recovery"]);
  });

  it("grants exactly 10 guesses under concurrent guessing on two server processes, then destroys the record", async () => {
    const dataDir = join(dir, "shared");
    // Two `pairwise-server` processes on one data directory (one SQLite file): the guess
    // counter must hold across processes, not just inside one event loop.
    const first = await start(dataDir); // creates the keys and schema, then steps aside
    await first.close();
    servers = servers.filter((s) => s !== first);
    const [a, b] = await Promise.all([serverProcess(dataDir), serverProcess(dataDir)]);
    const keyring = await enrolPassword({
      keyring: createKeyring(),
      vaultUrl: httpUrl(a),
      password: "the real one",
    });
    const slot = slotOf(keyring);
    if (!slot) throw new Error("no password slot");
    await opaque.ready;
    // 30 attackers start logins at once, half on each node; each started login is a guess.
    const statuses = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const { startLoginRequest } = opaque.client.startLogin({ password: `guess ${String(i)}` });
        const res = await fetch(`${httpUrl(i % 2 ? a : b)}/backup-vault/v1/login/start`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ vaultId: slot.vaultId, startLoginRequest }),
        });
        await res.arrayBuffer();
        return res.status;
      }),
    );
    expect(statuses.filter((s) => s === 200).length).toBe(10);
    // The rest are told the record is locked (it is destroyed once the started logins fail or
    // expire).
    expect(statuses.filter((s) => s === 410).length).toBe(20);
    // The owner now comes with the right password: too late.
    const err: unknown = await createPasswordOpener()(slot, "the real one").catch(
      (e: unknown) => e,
    );
    expect(BackupError.is(err, "VaultLocked")).toBe(true);
  });

  it("locks after 10 wrong passwords typed through the client", async () => {
    const server = await start(join(dir, "three"));
    const keyring = await enrolPassword({
      keyring: createKeyring(),
      vaultUrl: httpUrl(server),
      password: "right",
    });
    const slot = slotOf(keyring);
    if (!slot) throw new Error("no password slot");
    const open = createPasswordOpener();
    // One real wrong password end to end, then nine more guesses spent by starting logins.
    expect(BackupError.is(await open(slot, "wrong").catch((e: unknown) => e), "WrongKey")).toBe(
      true,
    );
    await opaque.ready;
    for (let i = 0; i < 9; i++) {
      const { startLoginRequest } = opaque.client.startLogin({ password: "x" });
      const res = await fetch(`${httpUrl(server)}/backup-vault/v1/login/start`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ vaultId: slot.vaultId, startLoginRequest }),
      });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    expect(BackupError.is(await open(slot, "right").catch((e: unknown) => e), "VaultLocked")).toBe(
      true,
    );
  });
});
