// Group commit in the device database (client's `groupCommitMs`): many writes share one commit,
// and everything is committed before any frame leaves for the relay. With a commit delay far
// beyond the test, only that write-ahead commit can make anything durable, so what the files on
// disk hold (what a restart after kill -9 would find) shows when it ran.
import { copyFileSync, existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { PairwiseDevice, type StoredMessage } from "@pairwise/client";
import { describe, expect, it } from "vitest";
import { home, until, useRelay } from "./support.ts";

const relay = useRelay();
const NEVER_MS = 600_000;

/**
 * Keys under `prefix` committed in a device's database: its file and WAL as they are on disk now,
 * copied and opened elsewhere (the device holds its database's exclusive lock).
 */
function committedKeys(dir: string, table: string, prefix: string): string[] {
  const copy = join(mkdtempSync(join(tmpdir(), "pw-write-ahead-")), "device.db");
  copyFileSync(join(dir, "device.db"), copy);
  if (existsSync(join(dir, "device.db-wal")))
    copyFileSync(join(dir, "device.db-wal"), `${copy}-wal`);
  const db = new Database(copy);
  try {
    return db
      .prepare<[string, string, string], { key: string }>(
        "SELECT key FROM kv WHERE tbl = ? AND key >= ? AND key < ? ORDER BY key",
      )
      .all(table, prefix, `${prefix}\uffff`)
      .map((r) => r.key);
  } finally {
    db.close();
  }
}

describe("write-ahead: a device commits before anything leaves it", () => {
  it("commits a send's session step and outbox entry before the relay gets the ciphertexts, and a received message before its acknowledgement", async () => {
    const aliceHome = home("wa-alice");
    const bobHome = home("wa-bob");
    const open = (dir: string) =>
      PairwiseDevice.open({ home: dir, timeoutMs: 15_000, groupCommitMs: NEVER_MS });
    const alice = open(aliceHome);
    const bob = open(bobHome);
    await alice.register({ server: { url: relay().url }, accountId: "wa-alice" });
    await bob.register({ server: { url: relay().url }, accountId: "wa-bob" });
    bob.deliveryReceipts = false;

    const id = await alice.sendText("wa-bob", "written ahead");
    // The submission left after its commit: the session with Bob's device and the outbox entry
    // (for retry receipts) are in the file.
    expect(committedKeys(aliceHome, "session", "wa-bob|")).toEqual(["wa-bob|1"]);
    expect(committedKeys(aliceHome, "app", "outbox|").some((k) => k.includes(id))).toBe(true);
    // The history entry written after the submission still waits in the open group.
    expect(alice.history("wa-bob").map((m) => m.id)).toEqual([id]);
    expect(committedKeys(aliceHome, "app", "msg|")).toEqual([]);

    let atEvent: string[] | undefined;
    const got: StoredMessage[] = [];
    bob.on("message", (m) => {
      got.push(m);
      atEvent = committedKeys(bobHome, "app", "msg|");
    });
    await bob.startReceiving();
    await until(() => got.length === 1);
    expect(atEvent).toEqual([]); // stored, not yet committed: nothing has left Bob since
    await bob.flushAcks();
    // The acknowledgement left after the commit of the message (and of the session step).
    expect(committedKeys(bobHome, "app", "msg|")).toHaveLength(1);
    expect(committedKeys(bobHome, "session", "wa-alice|")).toEqual(["wa-alice|1"]);

    await alice.close();
    await bob.close();
    // close() commits what was still open.
    expect(committedKeys(aliceHome, "app", "msg|")).toHaveLength(1);
  });
});
