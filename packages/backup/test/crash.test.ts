// A backup process killed with SIGKILL mid-upload: what it left is never restored, the previous
// backup still restores, and the next backup succeeds.
import { spawn } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBackup } from "../src/internal/create-backup.ts";
import { createKeyring, recoveryKeyOf } from "../src/internal/keyring.ts";
import type { BackupRecord } from "../src/internal/records.ts";
import { listBackups, restoreBackup, type RestoreSink } from "../src/internal/restore-backup.ts";
import { createFsProvider } from "../src/providers/fs.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pw-backup-crash-"));
});
afterAll(async () => {
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

async function partsOf(id: string): Promise<string[]> {
  return readdir(join(dir, "pairwise-backup", id)).catch(() => []);
}

describe("kill -9 during a backup", () => {
  it("leaves nothing restore accepts; the earlier backup restores; the next backup works", async () => {
    const provider = createFsProvider({ dir });
    const keyring = createKeyring();
    const first = await createBackup({
      provider,
      keyring,
      records: [
        { table: "app", key: "msg|a|1", value: new TextEncoder().encode("before the crash") },
      ],
      sequence: 1,
    });

    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "test/fixtures/crash-writer.ts",
        dir,
        Buffer.from(keyring.key).toString("hex"),
        "2",
      ],
      { cwd: join(import.meta.dirname, ".."), stdio: ["ignore", "pipe", "inherit"] },
    );
    const exited = new Promise<string | null>((resolve) =>
      child.on("exit", (_code, signal) => resolve(signal)),
    );
    // Wait (bounded) until the writer has stored a few parts of backup 2, then kill it.
    let crashedId: string | undefined;
    for (let i = 0; i < 600 && crashedId === undefined; i++) {
      await new Promise((r) => setTimeout(r, 100));
      for (const b of await listBackups({ provider })) {
        if (
          b.sequence === 2 &&
          (await partsOf(b.id)).filter((f) => f.startsWith("part-")).length >= 3
        ) {
          crashedId = b.id;
        }
      }
    }
    child.kill("SIGKILL");
    expect(await exited).toBe("SIGKILL");
    expect(crashedId).toBeDefined();

    const listed = await listBackups({ provider });
    expect(listed.find((b) => b.id === crashedId)?.complete).toBe(false);
    const sink = collect();
    const restored = await restoreBackup({
      provider,
      unlock: { recoveryKey: recoveryKeyOf(keyring) },
      sink,
    });
    expect(restored.id).toBe(first.id);
    expect(new TextDecoder().decode(sink.records[0]?.value)).toBe("before the crash");
    const refused: unknown = await restoreBackup({
      provider,
      id: crashedId ?? "",
      unlock: { recoveryKey: recoveryKeyOf(keyring) },
      sink: collect(),
    }).catch((e: unknown) => e);
    expect((refused as { code?: string }).code).toBe("Incomplete");

    const next = await createBackup({
      provider,
      keyring,
      records: [{ table: "app", key: "msg|a|2", value: new TextEncoder().encode("after") }],
      sequence: 3,
    });
    const again = collect();
    expect(
      (
        await restoreBackup({
          provider,
          unlock: { recoveryKey: recoveryKeyOf(keyring) },
          sink: again,
          minSequence: 3,
        })
      ).id,
    ).toBe(next.id);
  });
});
