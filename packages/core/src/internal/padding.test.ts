import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CoreError } from "./errors.ts";
import { PADDING_BLOCK_BYTES, padPlaintext, unpadPlaintext } from "./padding.ts";

function expectMalformed(bytes: Uint8Array): void {
  try {
    unpadPlaintext(bytes);
  } catch (err) {
    expect(CoreError.is(err, "MalformedInput")).toBe(true);
    return;
  }
  expect.unreachable("expected MalformedInput");
}

describe("plaintext padding", () => {
  it("appends 0x80 and zeros up to a multiple of 160 bytes", () => {
    expect(padPlaintext(new Uint8Array(0))).toEqual(
      Uint8Array.from({ length: 160 }, (_, i) => (i === 0 ? 0x80 : 0)),
    );
    expect(padPlaintext(new Uint8Array(159).fill(1))).toHaveLength(160);
    expect(padPlaintext(new Uint8Array(160).fill(1))).toHaveLength(320);
    const padded = padPlaintext(Uint8Array.of(1, 2, 3));
    expect(padded.subarray(0, 5)).toEqual(Uint8Array.of(1, 2, 3, 0x80, 0));
  });

  it("round-trips and always pads to a non-zero multiple of the block", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), (plaintext) => {
        const padded = padPlaintext(plaintext);
        expect(padded.length % PADDING_BLOCK_BYTES).toBe(0);
        expect(padded.length).toBeGreaterThan(plaintext.length);
        expect(padded.length - plaintext.length).toBeLessThanOrEqual(PADDING_BLOCK_BYTES);
        expect(unpadPlaintext(padded)).toEqual(plaintext);
      }),
      { numRuns: 200 },
    );
  });

  it("rejects invalid padding", () => {
    expectMalformed(new Uint8Array(0));
    expectMalformed(new Uint8Array(159));
    expectMalformed(new Uint8Array(160)); // no marker
    expectMalformed(Uint8Array.from({ length: 160 }, (_, i) => (i === 159 ? 1 : 0))); // marker not 0x80
    // Marker in an earlier block: a whole block of zeros is not minimal padding.
    expectMalformed(Uint8Array.from({ length: 320 }, (_, i) => (i === 100 ? 0x80 : 0)));
    expect(
      unpadPlaintext(Uint8Array.from({ length: 320 }, (_, i) => (i === 160 ? 0x80 : 0))),
    ).toHaveLength(160);
  });

  it("accepts only the canonical padded form of some plaintext", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 480 }), (bytes) => {
        let plaintext: Uint8Array;
        try {
          plaintext = unpadPlaintext(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(CoreError);
          return;
        }
        expect(padPlaintext(plaintext)).toEqual(bytes);
      }),
      { numRuns: 200 },
    );
  });
});
