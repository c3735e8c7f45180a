import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { InteropError } from "../errors.ts";
import { fileMessageIds, memoryMessageIds } from "./message-ids.ts";

const dir = mkdtempSync(join(tmpdir(), "pairwise-message-ids-"));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("message id maps", () => {
  it("keep both directions of the most recent pairs in memory", () => {
    const ids = memoryMessageIds(3);
    for (let i = 1; i <= 5; i++) ids.link(`p:${String(i)}`, `t:9:${String(i)}`);
    expect(ids.get("p:5")).toBe("t:9:5");
    expect(ids.get("t:9:3")).toBe("p:3");
    // Pairs 1 and 2 are the oldest beyond the three kept.
    expect(ids.get("p:1")).toBeUndefined();
    expect(ids.get("t:9:2")).toBeUndefined();
  });

  it("keep pairs in a file across reopening, pruning the oldest", () => {
    const path = join(dir, "ids.db");
    const first = fileMessageIds(path, 1500);
    for (let i = 1; i <= 2500; i++) first.link(`p:${String(i)}`, `t:9:${String(i)}`);
    first.close();
    const again = fileMessageIds(path, 1500);
    expect(again.get("p:2500")).toBe("t:9:2500");
    expect(again.get("t:9:1001")).toBe("p:1001");
    // The prune at the 2000th link dropped the pairs up to 500.
    expect(again.get("p:500")).toBeUndefined();
    // Numbering goes on from where the file was: the next prune keeps the latest.
    for (let i = 2501; i <= 3000; i++) again.link(`p:${String(i)}`, `t:9:${String(i)}`);
    expect(again.get("p:1500")).toBeUndefined();
    expect(again.get("p:1501")).toBe("t:9:1501");
    again.close();
  });

  it("refuse a file that is not a database with a typed error", () => {
    const path = join(dir, "not-a-db");
    writeFileSync(path, "x".repeat(4096));
    expect(() => fileMessageIds(path)).toThrow(InteropError);
  });
});
