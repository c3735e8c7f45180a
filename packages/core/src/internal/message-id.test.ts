import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { CoreError } from "./errors.ts";
import { messageIdAt, newMessageId } from "./message-id.ts";

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const msOf = (id: string) => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);

// The generator keeps its last millisecond across calls, so each test starts later than the last.
let base = Date.now() + 1_000_000;
const later = () => (base += 1_000_000);

describe("newMessageId", () => {
  it("is a version 7 UUID carrying the time it was made", () => {
    const now = later();
    const id = newMessageId(now);
    expect(id).toMatch(UUID_V7);
    expect(msOf(id)).toBe(now);
    expect(msOf(newMessageId())).toBeGreaterThanOrEqual(now); // Date.now() is behind: counts on
  });

  it("increases within one millisecond, past the counter's 4,096, and when the clock goes back", () => {
    const now = later();
    const ids = Array.from({ length: 10_000 }, (_, i) => newMessageId(i < 5_000 ? now : now - i));
    ids.forEach((id) => expect(id).toMatch(UUID_V7));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    // More ids than one millisecond's counter holds move on to the next millisecond.
    expect(msOf(ids.at(-1)!)).toBeGreaterThan(now);
  });

  it("orders ids made at different times by time, whatever their random bits", () => {
    const t = later();
    const ids = [t, t + 1, t + 2, t + 60_000].map((ms) => newMessageId(ms));
    expect([...ids].sort()).toEqual(ids);
    expect(ids.map(msOf)).toEqual([t, t + 1, t + 2, t + 60_000]);
  });

  it("draws its random bits afresh: ids of separate milliseconds share no random tail", () => {
    const t = later();
    const tails = Array.from({ length: 2_000 }, (_, i) => newMessageId(t + i).slice(19));
    expect(new Set(tails).size).toBe(tails.length);
    // The variant nibble is 8-b; the rest of the tail's hex digits all occur.
    expect(new Set(tails.join("").replaceAll("-", ""))).toHaveProperty("size", 16);
  });
});

describe("messageIdAt", () => {
  const seed = (s: string) => createHash("sha256").update(s).digest();

  it("is the same id for the same time and seed, a version 7 UUID carrying that time", () => {
    const id = messageIdAt(1_700_000_000_123, seed("update-1|0"));
    expect(id).toMatch(UUID_V7);
    expect(msOf(id)).toBe(1_700_000_000_123);
    expect(messageIdAt(1_700_000_000_123, seed("update-1|0"))).toBe(id);
    expect(messageIdAt(1_700_000_000_123, seed("update-1|1"))).not.toBe(id);
  });

  it("sorts by time whatever the seeds", () => {
    const ids = [5, 6, 7_000, 7_001].map((ms, i) =>
      messageIdAt(1_700_000_000_000 + ms, seed(`s${i}`)),
    );
    expect([...ids].sort()).toEqual(ids);
  });

  it("clamps a time outside the 48-bit field and refuses a short seed", () => {
    expect(msOf(messageIdAt(-5, seed("a")))).toBe(0);
    expect(msOf(messageIdAt(Number.NaN, seed("a")))).toBe(0);
    expect(messageIdAt(2 ** 60, seed("a")).slice(0, 13)).toBe("ffffffff-ffff");
    expect(() => messageIdAt(1, new Uint8Array(9))).toThrow(CoreError);
  });
});
