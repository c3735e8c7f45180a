// The helpers the CLI and the bot host share: a device's keyring and sequence in its store,
// backing a device up and restoring into one, and destinations written as one string.
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createMemoryStore, type KeyValueStore } from "@pairwise/core";
import { describe, expect, it } from "vitest";
import { createDestinationProvider, parseBackupDestination } from "../destinations.ts";
import { createFsProvider } from "../providers/fs.ts";
import {
  DEVICE_SEQUENCE_KEY,
  backupDevice,
  ensureDeviceKeyring,
  lastBackupSequence,
  loadDeviceKeyring,
  restoreDevice,
  saveDeviceKeyring,
} from "./device-backup.ts";
import { selectDeviceRecords } from "./device-records.ts";
import { BackupError } from "./errors.ts";
import { addPasskeySlot, createPasskeySalt, recoveryKeyOf } from "./keyring.ts";
import { listBackups } from "./restore-backup.ts";

const temp = () => mkdtempSync(join(tmpdir(), "pw-device-backup-"));

function deviceWithHistory(n: number): KeyValueStore {
  const store = createMemoryStore();
  store.apply(
    Array.from({ length: n }, (_, i) => ({
      table: "app" as const,
      key: `msg|chat|${String(i).padStart(4, "0")}`,
      value: randomBytes(200),
    })),
  );
  return store;
}

const text = (store: KeyValueStore) =>
  [...selectDeviceRecords(store)]
    .map((r) => `${r.table}|${r.key}=${Buffer.from(r.value).toString("hex")}`)
    .join("\n");

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
}

describe("device backups", () => {
  it("creates the keyring on the first backup only, numbers backups, restores byte-identical", async () => {
    const store = deviceWithHistory(30);
    const provider = createFsProvider({ dir: temp() });
    const first = await backupDevice({ store, provider, labels: { device: "1" } });
    expect(first.sequence).toBe(1);
    const keyring = loadDeviceKeyring(store);
    expect(keyring && recoveryKeyOf(keyring)).toBe(first.recoveryKey);
    const second = await backupDevice({ store, provider });
    expect(second.sequence).toBe(2);
    expect(second.recoveryKey).toBeUndefined();
    expect(lastBackupSequence(store)).toBe(2);

    const fresh = createMemoryStore();
    const restored = await restoreDevice({
      store: fresh,
      provider,
      unlock: { recoveryKey: first.recoveryKey ?? "" },
    });
    expect(restored.manifest.sequence).toBe(2);
    expect(restored.imported).toBe(30);
    expect(text(fresh)).toBe(text(store));
    // The new device goes on under the same key, after the restored sequence.
    expect(recoveryKeyOf(loadDeviceKeyring(fresh) ?? ensureDeviceKeyring(fresh).keyring)).toBe(
      first.recoveryKey,
    );
    expect(lastBackupSequence(fresh)).toBe(2);
    expect((await backupDevice({ store: fresh, provider })).sequence).toBe(3);
    // A device that knows less than the destination numbers its backup after `after`.
    const other = deviceWithHistory(1);
    expect((await backupDevice({ store: other, provider, after: 3 })).sequence).toBe(4);
    expect(lastBackupSequence(other)).toBe(4);

    // An older backup than the device has seen is refused, and nothing changes.
    const before = text(store);
    const oldest = (await listBackups({ provider })).find((b) => b.sequence === 1);
    if (!oldest) throw new Error("no first backup");
    const err = await rejection(
      restoreDevice({
        store,
        provider,
        unlock: { recoveryKey: first.recoveryKey ?? "" },
        id: oldest.id,
      }),
    );
    expect(BackupError.is(err, "RolledBack")).toBe(true);
    expect(text(store)).toBe(before);
  });

  it("keeps a keyring changed while a backup runs (a passkey enrolled meanwhile)", async () => {
    const store = deviceWithHistory(5);
    const { keyring, created } = ensureDeviceKeyring(store);
    expect(created).toBe(true);
    expect(ensureDeviceKeyring(store).created).toBe(false);
    const provider = createFsProvider({ dir: temp() });
    const running = backupDevice({ store, provider });
    const withPasskey = addPasskeySlot(keyring, {
      credentialId: randomBytes(16),
      salt: createPasskeySalt(),
      prfOutput: randomBytes(32),
      publicKey: randomBytes(77),
    });
    saveDeviceKeyring(store, withPasskey);
    const done = await running;
    expect(done.recoveryKey).toBeUndefined();
    expect(loadDeviceKeyring(store)?.slots.map((s) => s.kind)).toEqual(["recovery", "passkey"]);
  });

  it("a failed backup stores no sequence and no keyring; an unusable fs directory is ProviderFailure", async () => {
    const store = deviceWithHistory(3);
    const file = join(temp(), "a-file");
    writeFileSync(file, "x");
    const err = await rejection(
      backupDevice({ store, provider: createFsProvider({ dir: join(file, "under") }) }),
    );
    expect(BackupError.is(err, "ProviderFailure")).toBe(true);
    expect(store.get("app", DEVICE_SEQUENCE_KEY)).toBeUndefined();
    expect(loadDeviceKeyring(store)).toBeUndefined();
  });
});

describe("destinations", () => {
  it("parses fs, s3, gdrive and icloud", () => {
    expect(parseBackupDestination("fs:b/x", { baseDir: "/srv" })).toEqual({
      kind: "fs",
      dir: "/srv/b/x",
    });
    expect(parseBackupDestination("s3://my-bucket")).toEqual({
      kind: "s3",
      bucket: "my-bucket",
      prefix: "",
    });
    expect(parseBackupDestination("s3://my-bucket/a/b")).toEqual({
      kind: "s3",
      bucket: "my-bucket",
      prefix: "a/b/",
    });
    expect(parseBackupDestination("gdrive")).toEqual({ kind: "gdrive" });
    expect(parseBackupDestination("icloud")).toEqual({ kind: "icloud" });
  });

  it("refuses other shapes and kinds not allowed, without echoing the value", () => {
    for (const bad of ["ftp://secret", "fs:", "s3://UPPER/x", "s3://", "drive"]) {
      const err = (() => {
        try {
          parseBackupDestination(bad);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(BackupError.is(err, "InvalidArgument")).toBe(true);
      expect((err as Error).message).toBe(
        "InvalidArgument: expected fs:DIR, s3://BUCKET/PREFIX, gdrive or icloud",
      );
    }
    expect(() => parseBackupDestination("gdrive", { kinds: ["fs", "s3"] })).toThrow(
      "expected fs:DIR or s3://BUCKET/PREFIX",
    );
  });

  it("needs each provider's settings", async () => {
    const err = await rejection(createDestinationProvider({ kind: "gdrive" }, {}));
    expect(BackupError.is(err, "InvalidArgument")).toBe(true);
    expect((err as Error).message).toContain("PAIRWISE_GDRIVE_TOKEN");
    const icloud = await rejection(
      createDestinationProvider({ kind: "icloud" }, { PAIRWISE_ICLOUD_KEY_FILE: "/nonexistent" }),
    );
    expect(BackupError.is(icloud, "InvalidArgument")).toBe(true);
    const fs = await createDestinationProvider({ kind: "fs", dir: temp() }, {});
    expect(fs.name).toBe("fs");
  });
});
