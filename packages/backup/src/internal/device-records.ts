import type { KeyValueStore, StoreTable, StoreWrite } from "@pairwise/core";
import type { RestoreSink } from "./restore-backup.ts";
import type { BackupRecord } from "./records.ts";

/**
 * What a device backup holds, as an allow-list over core's store: message history (`msg|`,
 * `msgid|`) and groups (`group|`) of the `app` table, the relay settings (`meta|server-url`,
 * `meta|server-key`), and contacts' account keys with their verified flags (`contact-key`).
 * Never private keys: identity, prekeys, sessions, sender keys, the Noise key and the outbox
 * are not on the list, so a new kind of secret record cannot slip into a backup by default.
 */
export const DEVICE_BACKUP_SELECTION: ReadonlyArray<{
  readonly table: StoreTable;
  readonly prefixes: readonly string[];
  /** Records a new device already has keep their value on restore. */
  readonly keepExisting: boolean;
}> = [
  { table: "app", prefixes: ["msg|", "msgid|", "group|"], keepExisting: false },
  { table: "app", prefixes: ["meta|server-url", "meta|server-key"], keepExisting: true },
  { table: "contact-key", prefixes: [""], keepExisting: true },
];

/** The records of a device's store that go into its backup (see {@link DEVICE_BACKUP_SELECTION}). */
export function* selectDeviceRecords(store: KeyValueStore): Generator<BackupRecord> {
  for (const { table, prefixes } of DEVICE_BACKUP_SELECTION) {
    for (const prefix of prefixes) {
      for (const [key, value] of store.list(table, prefix)) {
        if (prefix.startsWith("meta|") && key !== prefix) continue;
        yield { table, key, value };
      }
    }
  }
}

function selectionOf(record: BackupRecord) {
  return DEVICE_BACKUP_SELECTION.find(
    (s) =>
      s.table === record.table &&
      s.prefixes.some((p) => (p.startsWith("meta|") ? record.key === p : record.key.startsWith(p))),
  );
}

/**
 * A {@link RestoreSink} that imports a backup into a device's store in one atomic `apply` at
 * commit: history and groups are written, settings and contact keys the device already has are
 * kept. Records outside the selection (a backup from a foreign writer) are ignored, so a backup
 * can never plant keys or sessions. Staged writes are held in memory until commit.
 */
export function createStoreSink(store: KeyValueStore): RestoreSink & { readonly written: number } {
  let writes: StoreWrite[] = [];
  let written = 0;
  return {
    get written() {
      return written;
    },
    put(record) {
      const selection = selectionOf(record);
      if (!selection) return;
      const table = selection.table;
      if (selection.keepExisting && store.get(table, record.key) !== undefined) return;
      writes.push({ table, key: record.key, value: record.value });
    },
    commit() {
      store.apply(writes);
      store.flush?.();
      written = writes.length;
      writes = [];
    },
    abort() {
      writes = [];
    },
  };
}
