import { spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { CRASH_ACCOUNT, crashEnvelope } from "../../../test/fixtures/crash-envelope.ts";
import { openSqliteServerStore } from "./sqlite-server-store.ts";

const appDir = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const writer = join(appDir, "test/fixtures/crash-writer.ts");
const dir = mkdtempSync(join(tmpdir(), "pairwise-server-crash-"));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const b0 = new Uint8Array(0);

interface Run {
  /** Every complete line the writer printed: message index and its two seqs. */
  acks: Array<{ i: number; seqs: number[] }>;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/**
 * Runs the writer and SIGKILLs it once it has acknowledged `killAfter` messages or 5 s after it
 * became ready (30 s at most in all, in case it never does).
 */
function runWriter(path: string, killAfter: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", writer, path], {
      cwd: appDir,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let stderr = "";
    let acks = 0;
    let readyTimer: NodeJS.Timeout | undefined;
    const kill = () => child.kill("SIGKILL");
    const guard = setTimeout(kill, 30_000);
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk;
      if (readyTimer === undefined && out.startsWith("ready\n"))
        readyTimer = setTimeout(kill, 5_000);
      for (const c of chunk) if (c === "\n") acks++;
      if (acks > killAfter) kill();
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (_code, signal) => {
      clearTimeout(guard);
      clearTimeout(readyTimer);
      // Only newline-terminated lines count: a torn last line was not fully acknowledged.
      const lines = out.split("\n").slice(1, -1);
      const parsed = lines.map((l) => {
        const [i, ...seqs] = l.split(" ").map(Number);
        return { i: i ?? -1, seqs };
      });
      resolve({ acks: parsed, signal, stderr });
    });
  });
}

describe("SQLite server store under kill -9", () => {
  for (let round = 1; round <= 3; round++) {
    it(`keeps every acknowledged message (round ${round})`, { timeout: 45_000 }, async () => {
      const path = join(dir, `crash-${round}.db`);
      const run = await runWriter(path, 200 + randomInt(0, 1500));
      // Killed by us, not ended by an error (stderr shown if it did; warnings alone are fine).
      expect(run.signal, run.stderr).toBe("SIGKILL");
      expect(run.acks.length).toBeGreaterThanOrEqual(1);

      // Opening runs WAL recovery; the file must then be whole.
      const db = new Database(path);
      expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
      db.close();

      const store = openSqliteServerStore({ path });
      const [q1, q2] = await Promise.all(
        [1, 2].map((device) => store.fetchQueue(CRASH_ACCOUNT, device, 0, 1_000_000)),
      );
      await store.close();
      const byDevice = [q1 ?? [], q2 ?? []].map((q) => new Map(q.map((m) => [m.seq, m.envelope])));
      // Compared as buffers: toEqual walks typed arrays element by element, far too slowly here.
      const lost = run.acks.filter(({ i, seqs }) => {
        const expected = Buffer.from(crashEnvelope(i));
        return (
          seqs.length !== 2 || seqs.some((seq, d) => !expected.equals(byDevice[d]?.get(seq) ?? b0))
        );
      });
      expect(lost).toEqual([]);
      // Both copies of a message commit together, and at most the one message in flight at the
      // kill (committed, not yet printed) is stored beyond the acknowledged ones.
      const indexes = (q: typeof q1) =>
        (q ?? []).map((m) => new DataView(m.envelope.buffer, m.envelope.byteOffset).getUint32(0));
      expect(indexes(q1)).toEqual(indexes(q2));
      expect(q1?.length).toBeGreaterThanOrEqual(run.acks.length);
      expect(q1?.length).toBeLessThanOrEqual(run.acks.length + 1);
      expect(indexes(q1)).toEqual(Array.from({ length: q1?.length ?? 0 }, (_, i) => i));
    });
  }
});
