import { describe, expect, it } from "vitest";
import { InteropError } from "../errors.ts";
import { PAIRWISE_PROTOCOL, checkPartnerProtocol } from "./protocol.ts";

describe("partner protocol check", () => {
  it("accepts Signal with PQXDH at the required version or later", () => {
    expect(() => checkPartnerProtocol("p", PAIRWISE_PROTOCOL)).not.toThrow();
    expect(() => checkPartnerProtocol("p", { name: "signal-pqxdh", version: 2 })).not.toThrow();
  });

  it("refuses a weaker protocol with a clear error", () => {
    for (const declared of [
      { name: "signal-x3dh", version: 3 },
      { name: "signal-pqxdh", version: 0 },
      { name: "", version: 0 },
    ]) {
      let err: unknown;
      try {
        checkPartnerProtocol("provx", declared);
      } catch (e) {
        err = e;
      }
      expect(InteropError.is(err, "WeakProtocol")).toBe(true);
      expect((err as Error).message).toContain("partner provx declares");
      expect((err as Error).message).toContain("required: signal-pqxdh v1");
    }
  });

  it("accepts an equivalent only when the operator approved that exact version", () => {
    const mls = { name: "mls-pq", version: 1 };
    expect(() => checkPartnerProtocol("p", mls, ["mls-pq/1"])).not.toThrow();
    expect(() => checkPartnerProtocol("p", { ...mls, version: 2 }, ["mls-pq/1"])).toThrow(
      InteropError,
    );
  });
});
