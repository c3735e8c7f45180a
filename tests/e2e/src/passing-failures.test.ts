// A message whose handling fails for a passing reason — the device's storage, its disk — is not
// acknowledged and not given up: after the cause is gone, it arrives (with its file) exactly once.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { PairwiseDevice, type StoredMessage } from "@pairwise/client";
import { describe, expect, it } from "vitest";
import { account, home, useRelay } from "./support.ts";

const relay = useRelay();

/** Opens a device, takes everything queued and reports what it showed and what failed. */
async function receiveAll(dir: string) {
  const device = PairwiseDevice.open({ home: dir, timeoutMs: 15_000 });
  device.deliveryReceipts = false;
  const shown: StoredMessage[] = [];
  const failed: string[] = [];
  device.on("message", (m) => shown.push(m));
  device.on("decrypt-failed", (e) => failed.push(e.code));
  await device.connect();
  await device.startReceiving();
  await device.drained(30_000);
  await device.flushAcks();
  return { device, shown, failed };
}

describe("a message whose handling fails for a passing reason", () => {
  it("stays unacknowledged when storing it fails, and arrives once the device can store it", async () => {
    const alice = await account(relay(), "pf-alice");
    const bobHome = home("pf-bob");
    await (await account(relay(), "pf-bob", bobHome)).close();
    // Bob's database refuses to store messages (as a full or failing disk would).
    const raw = new Database(join(bobHome, "device.db"));
    raw.exec(`CREATE TRIGGER no_messages BEFORE INSERT ON kv
      WHEN NEW.tbl = 'app' AND NEW.key LIKE 'msg|%'
      BEGIN SELECT RAISE(ABORT, 'disk trouble'); END;`);
    raw.close();
    const id = await alice.sendText("pf-bob", "kept for later");

    const first = await receiveAll(bobHome);
    expect(first.shown).toEqual([]);
    expect(first.failed).toEqual([]); // nothing is wrong with the message itself
    expect(first.device.history("pf-alice")).toEqual([]);
    await first.device.close();

    const fixed = new Database(join(bobHome, "device.db"));
    fixed.exec("DROP TRIGGER no_messages");
    fixed.close();
    const second = await receiveAll(bobHome);
    expect(second.shown.map((m) => [m.id, m.text])).toEqual([[id, "kept for later"]]);
    expect(second.failed).toEqual([]);
    await second.device.close();
    await alice.close();
  }, 60_000);

  it("keeps a file download that the disk refused, and shows the message with its file later", async () => {
    const alice = await account(relay(), "pf-carol");
    const bobHome = home("pf-dave");
    await (await account(relay(), "pf-dave", bobHome)).close();
    const source = join(home("pf-file"), "photo.txt");
    writeFileSync(source, "a picture, in words\n");
    // The file's place on Dave's disk is taken by a directory: writing the download fails.
    const messageId = "pf-file-message-1";
    const hash = createHash("sha256").update(messageId).digest("hex").slice(0, 16);
    const dest = join(bobHome, "files", `${hash}-photo.txt`);
    mkdirSync(join(dest, "in-the-way"), { recursive: true });
    await alice.sendFile("pf-dave", source, { messageId });

    const first = await receiveAll(bobHome);
    expect(first.shown).toEqual([]);
    expect(first.failed).toEqual([]);
    await first.device.close();

    rmSync(dest, { recursive: true });
    const second = await receiveAll(bobHome);
    expect(second.shown.map((m) => m.id)).toEqual([messageId]);
    expect(readFileSync(String(second.shown[0]?.file), "utf8")).toBe("a picture, in words\n");
    expect(second.failed).toEqual([]);
    await second.device.close();
    await alice.close();
  }, 60_000);
});
