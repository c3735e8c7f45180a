import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { submissionKeys } from "./dedup-key.ts";

describe("submissionKeys", () => {
  const id = "0193a5b2-1c3d-7abc-8def-0123456789ab";
  const secret = randomBytes(32);
  const submissionKey = submissionKeys(secret);

  it("is the UUIDv7 timestamp, then a digest of sender and id that shows neither", () => {
    const key = submissionKey("alice|1", id);
    expect(key).toMatch(/^0193a5b21c3d\.[A-Za-z0-9_-]{22}$/);
    expect(key).not.toContain("alice");
    expect(key).not.toContain("0123456789ab");
    expect(submissionKey("alice|1", id)).toBe(key);
    expect(submissionKey("ALICE|1", id.toUpperCase()).slice(0, 13)).toBe(key.slice(0, 13));
  });

  it("is keyed: the same secret (every node of a cluster) gives the same key, another secret or none another", () => {
    const key = submissionKey("alice|1", id);
    expect(submissionKeys(Uint8Array.from(secret))("alice|1", id)).toBe(key);
    expect(submissionKeys(randomBytes(32))("alice|1", id)).not.toBe(key);
    // Not the digest anyone can compute without the secret (the unkeyed one of before).
    const unkeyed = createHash("sha256").update(`7:alice|1|${id}`).digest("base64url");
    expect(key.split(".").pop()).not.toBe(unkeyed.slice(0, 22));
    expect(() => submissionKeys(randomBytes(16))).toThrow(/at least 32 bytes/);
  });

  it("tells senders and ids apart", () => {
    const digest = (scope: string, messageId: string) =>
      submissionKey(scope, messageId).split(".").pop();
    const digests = new Set([
      digest("alice|1", id),
      digest("alice|2", id),
      digest("bob|1", id),
      digest("alice|1", id.replace(/b$/, "c")),
      // An id holding "|" cannot move the boundary between sender and id.
      digest("alice", `1|${id}`),
      digest("fed|alice", `1|${id}`),
      digest("fed|alice|1", id),
    ]);
    expect(digests.size).toBe(7);
  });

  it("keeps keys of later UUIDv7 ids later in order", () => {
    const earlier = submissionKey("zed|1", "0193a5b2-1c3d-7000-8000-000000000000");
    const later = submissionKey("amy|1", "0193a5b2-1c3e-7000-8000-000000000000");
    expect(earlier < later).toBe(true);
  });

  it("gives any other id the digest alone", () => {
    expect(submissionKey("alice|1", "m-1")).toMatch(/^[A-Za-z0-9_-]{22}$/);
    for (const other of [
      id.replace("-7abc", "-4abc"), // version 4
      id.replace("-8def", "-cdef"), // not the RFC variant
      id.replace("-", "x"),
      `${id}0`,
      id.replace("0123", "0g23"),
    ]) {
      expect(submissionKey("alice|1", other)).toMatch(/^[A-Za-z0-9_-]{22}$/);
    }
    expect(submissionKey("alice|1", "m-1")).not.toBe(submissionKey("alice|1", "m-2"));
  });
});
