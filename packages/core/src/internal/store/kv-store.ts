/**
 * The storage contract a device's state sits on. Everything a device keeps (identity, sessions,
 * prekeys, sender keys, contacts' account keys, device-list cache, who has our sender key,
 * processed message ids) is a typed record in one of these tables; `DeviceState` gives each its
 * typed API. A backend only implements this small interface, like a grammY storage adapter:
 * reads, a prefix scan, a count, and one atomic `apply` of a batch of writes.
 */
export type StoreTable =
  | "meta"
  | "session"
  | "identity"
  | "prekey"
  | "signed-prekey"
  | "kyber-prekey"
  | "sender-key"
  | "sender-key-shared"
  | "contact-key"
  | "device-list"
  | "processed"
  /** Records of the layer above core (messages, outbox), committed in the same transactions. */
  | "app";

/** One write: a value to store, or `null` to delete the key. */
export interface StoreWrite {
  table: StoreTable;
  key: string;
  value: Uint8Array | null;
}

/** Key-value tables with atomic batches; implemented by `createMemoryStore` and `openSqliteStore`. */
export interface KeyValueStore {
  /** The stored value, or `undefined`. Treat it as read-only: it may be the backend's own copy. */
  get(table: StoreTable, key: string): Uint8Array | undefined;
  /** Every `[key, value]` whose key starts with `prefix` (all keys when omitted), by key order. */
  list(table: StoreTable, prefix?: string): Array<[string, Uint8Array]>;
  /** Number of keys in a table. */
  count(table: StoreTable): number;
  /**
   * Applies every write or none (one transaction). Throws `CoreError("StorageFailure")` when the
   * backend cannot write; the store is then unchanged.
   */
  apply(writes: readonly StoreWrite[]): void;
  /**
   * Makes every applied batch durable. A backend that groups commits (see `commitDelayMs` of
   * `openSqliteStore`) commits its open group here; one that commits in `apply` may omit it.
   * Call it before anything that depends on the state leaves the process (a frame to the
   * server, a line on stdout). Throws `CoreError("StorageFailure")` when the commit fails; the
   * store then refuses every further call, as if the process had crashed.
   */
  flush?(): void;
  /** Releases the backend (closes the database). Further calls throw. */
  close(): void;
}

/** Separator inside composite keys (`account|device`); account ids never contain it. */
export const KEY_SEPARATOR = "|";
