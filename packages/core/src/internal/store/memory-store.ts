import { CoreError } from "../errors.ts";
import type { KeyValueStore, StoreTable, StoreWrite } from "./kv-store.ts";

/**
 * An in-memory {@link KeyValueStore} for tests and short-lived devices. Values are copied on the
 * way in and out, so callers can't change stored state by mutating a buffer.
 */
export function createMemoryStore(): KeyValueStore {
  const tables = new Map<StoreTable, Map<string, Uint8Array>>();
  let closed = false;
  const table = (name: StoreTable) => {
    if (closed) throw new CoreError("StorageFailure", "store is closed");
    let t = tables.get(name);
    if (!t) tables.set(name, (t = new Map<string, Uint8Array>()));
    return t;
  };
  return {
    get(name, key) {
      const v = table(name).get(key);
      return v && v.slice();
    },
    list(name, prefix = "") {
      return [...table(name)]
        .filter(([k]) => k.startsWith(prefix))
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, v]) => [k, v.slice()]);
    },
    count(name) {
      return table(name).size;
    },
    apply(writes: readonly StoreWrite[]) {
      for (const w of writes) table(w.table);
      for (const w of writes) {
        if (w.value === null) table(w.table).delete(w.key);
        else table(w.table).set(w.key, w.value.slice());
      }
    },
    close() {
      closed = true;
      tables.clear();
    },
  };
}
