import { describe, expect, it } from "vitest";
import { CoreError } from "./errors.ts";

describe("CoreError", () => {
  it("narrows by code", () => {
    const err: unknown = new CoreError("BadSignature", "device signature does not verify");
    expect(CoreError.is(err)).toBe(true);
    expect(CoreError.is(err, "BadSignature")).toBe(true);
    expect(CoreError.is(err, "MalformedInput")).toBe(false);
    expect(CoreError.is(new Error("x"))).toBe(false);
    if (CoreError.is(err, "BadSignature")) expect(err.code).toBe("BadSignature");
  });
});
