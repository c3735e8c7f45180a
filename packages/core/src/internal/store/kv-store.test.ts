import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "../../../test/support.ts";
import { CoreError } from "../errors.ts";
import type { KeyValueStore } from "./kv-store.ts";
import { createMemoryStore } from "./memory-store.ts";
import { openSqliteStore } from "./sqlite-store.ts";

const backends: Array<[string, () => KeyValueStore]> = [
  ["memory", () => createMemoryStore()],
  ["sqlite", () => openSqliteStore({ path: join(tempDir(), "kv.db") })],
  [
    "sqlite, low memory",
    () => openSqliteStore({ path: join(tempDir(), "kv.db"), lowMemory: true }),
  ],
];

describe.each(backends)("KeyValueStore contract: %s", (_name, open) => {
  it("gets, lists by prefix in key order, counts and deletes", () => {
    const s = open();
    s.apply([
      { table: "session", key: "bob|2", value: Uint8Array.of(2) },
      { table: "session", key: "bob|1", value: Uint8Array.of(1) },
      { table: "session", key: "bobby|1", value: Uint8Array.of(3) },
      { table: "identity", key: "bob|1", value: Uint8Array.of(9) },
    ]);
    expect(s.get("session", "bob|1")).toEqual(Uint8Array.of(1));
    expect(s.get("session", "nobody")).toBeUndefined();
    expect(s.list("session", "bob|").map(([k]) => k)).toEqual(["bob|1", "bob|2"]);
    expect(s.count("session")).toBe(3);
    s.apply([{ table: "session", key: "bob|1", value: null }]);
    expect(s.get("session", "bob|1")).toBeUndefined();
    expect(s.count("identity")).toBe(1);
    s.close();
  });

  it("copies on write: mutating a written buffer afterwards changes nothing stored", () => {
    const s = open();
    const v = Uint8Array.of(1, 2, 3);
    s.apply([{ table: "meta", key: "k", value: v }]);
    v[0] = 9;
    expect(s.get("meta", "k")).toEqual(Uint8Array.of(1, 2, 3));
    s.close();
  });
});

describe("SQLite store", () => {
  it("with small caches, serves far more cached records than it keeps, each current", () => {
    const store = openSqliteStore({ path: join(tempDir(), "small.db"), lowMemory: true });
    const value = (i: number, round: number) =>
      new TextEncoder().encode(`${String(i)}:${String(round)}`);
    for (let round = 0; round < 2; round++) {
      store.apply(
        Array.from({ length: 1000 }, (_, i) => ({
          table: "session" as const,
          key: `s${String(i)}`,
          value: value(i, round),
        })),
      );
      for (let i = 0; i < 1000; i++) {
        expect(new TextDecoder().decode(store.get("session", `s${String(i)}`))).toBe(
          `${String(i)}:${String(round)}`,
        );
      }
    }
    store.close();
  });

  it("persists across close and reopen, and a failed batch leaves nothing behind", () => {
    const path = join(tempDir(), "device.db");
    const s = openSqliteStore({ path });
    s.apply([{ table: "session", key: "a|1", value: Uint8Array.of(1) }]);
    // A write SQLite cannot bind fails the batch midway: all or nothing.
    const bad = [
      { table: "session" as const, key: "a|2", value: Uint8Array.of(2) },
      { table: "session" as const, key: "a|3", value: undefined as unknown as Uint8Array },
    ];
    expect(() => {
      s.apply(bad);
    }).toThrow(CoreError);
    expect(s.get("session", "a|2")).toBeUndefined();
    s.close();
    const again = openSqliteStore({ path });
    expect(again.get("session", "a|1")).toEqual(Uint8Array.of(1));
    expect(again.get("session", "a|2")).toBeUndefined();
    again.close();
  });

  it("refuses a file that is not a database with StorageFailure", async () => {
    const { writeFileSync } = await import("node:fs");
    const path = join(tempDir(), "junk.db");
    writeFileSync(path, "this is not sqlite, just text that is long enough to be read as a header");
    expect(() => openSqliteStore({ path })).toThrow(CoreError);
  });
});
