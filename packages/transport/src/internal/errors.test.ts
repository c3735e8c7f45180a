import { describe, expect, it } from "vitest";
import { TransportError, asTransportError } from "./errors.ts";

describe("TransportError", () => {
  it("narrows by code and keeps the cause", () => {
    const cause = new Error("socket hang up");
    const err: unknown = new TransportError("ConnectionLost", "stream error", { cause });
    expect(TransportError.is(err)).toBe(true);
    expect(TransportError.is(err, "ConnectionLost")).toBe(true);
    expect(TransportError.is(err, "Closed")).toBe(false);
    expect(TransportError.is(cause)).toBe(false);
    if (TransportError.is(err, "ConnectionLost")) {
      const code: "ConnectionLost" = err.code;
      expect(code).toBe("ConnectionLost");
      expect(err.message).toBe("ConnectionLost: stream error");
      expect(err.cause).toBe(cause);
      expect(err.name).toBe("TransportError");
    }
  });

  it("wraps foreign errors once", () => {
    const own = new TransportError("Timeout", "t");
    expect(asTransportError(own, "Closed", "x")).toBe(own);
    const wrapped = asTransportError(new Error("boom"), "Closed", "cannot");
    expect(wrapped.code).toBe("Closed");
  });
});
