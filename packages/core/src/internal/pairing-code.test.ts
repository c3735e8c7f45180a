import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { toHex, utf8 } from "./bytes.ts";
import { CoreError } from "./errors.ts";
import {
  PAIRING_CODE_ALPHABET,
  PAIRING_CODE_LENGTH,
  PAIRING_CODE_PBKDF2_ITERATIONS,
  createPairingCode,
  normalizePairingCode,
  stretchPairingCode,
} from "./pairing-code.ts";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return CoreError.is(err) ? err.code : "not a CoreError";
  }
  return undefined;
}

async function asyncCodeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    return CoreError.is(err) ? err.code : "not a CoreError";
  }
  return undefined;
}

const salt = utf8("pairwise pairing salt 0001");

describe("pairing code alphabet", () => {
  it("has 32 distinct upper-case ASCII symbols without 0, O, I, U", () => {
    expect(PAIRING_CODE_ALPHABET).toHaveLength(32);
    expect(new Set(PAIRING_CODE_ALPHABET).size).toBe(32);
    expect(PAIRING_CODE_ALPHABET).toMatch(/^[1-9A-Z]+$/);
    for (const c of "0OIU") expect(PAIRING_CODE_ALPHABET).not.toContain(c);
  });

  it("normalization accepts exactly the alphabet, in either case", () => {
    for (let c = 0; c < 128; c++) {
      const ch = String.fromCharCode(c);
      if (ch === " " || ch === "-") continue;
      const accepted = codeOf(() => normalizePairingCode(ch.repeat(8))) === undefined;
      expect(accepted, `char ${c}`).toBe(PAIRING_CODE_ALPHABET.includes(ch.toUpperCase()));
    }
  });
});

describe("createPairingCode", () => {
  it("reads 5 random bytes as eight 5-bit symbols, big-endian", () => {
    const fixed = (bytes: number[]) => () => Uint8Array.from(bytes);
    expect(createPairingCode({ random: fixed([0, 0, 0, 0, 0]) })).toBe("11111111");
    expect(createPairingCode({ random: fixed([0xff, 0xff, 0xff, 0xff, 0xff]) })).toBe("ZZZZZZZZ");
    expect(createPairingCode({ random: fixed([0x00, 0x44, 0x32, 0x14, 0xc7]) })).toBe("12345678");
    expect(createPairingCode({ random: fixed([0x84, 0x21, 0x08, 0x42, 0x10]) })).toBe("HHHHHHHH");
  });

  it("creates canonical codes", () => {
    for (let i = 0; i < 50; i++) {
      const code = createPairingCode();
      expect(code).toHaveLength(PAIRING_CODE_LENGTH);
      expect(normalizePairingCode(code)).toBe(code);
    }
  });

  it("rejects a random source of the wrong length", () => {
    expect(codeOf(() => createPairingCode({ random: () => new Uint8Array(4) }))).toBe(
      "InvalidArgument",
    );
  });
});

describe("normalizePairingCode", () => {
  it.each([
    ["abcdefgh", "ABCDEFGH"],
    ["ABCD-EFGH", "ABCDEFGH"],
    [" abcd efgh ", "ABCDEFGH"],
    ["a-b-c-d-e-f-g-h", "ABCDEFGH"],
    ["zyxw 9876", "ZYXW9876"],
  ])("normalizes %j", (input, expected) => {
    expect(normalizePairingCode(input)).toBe(expected);
  });

  it.each([
    "",
    "ABCDEFG",
    "ABCDEFGHJ",
    "ABCDEFG0",
    "ABCDEFGO",
    "ABCDEFGI",
    "ABCDEFGu",
    "ABCD_EFGH",
    "ABCD\tEFGH",
    "ABCD.EFGH",
    "ABCDEFGſ",
    "ＡＢＣＤＥＦＧＨ",
    `ABCDEFGH${" ".repeat(80)}`,
  ])("rejects %j", (input) => {
    expect(codeOf(() => normalizePairingCode(input))).toBe("MalformedInput");
  });

  it("returns a canonical code or throws MalformedInput on any text", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (input) => {
        const code = codeOf(() => {
          const out = normalizePairingCode(input);
          expect(out).toMatch(/^[1-9A-HJ-NP-TV-Z]{8}$/);
        });
        expect(code === undefined || code === "MalformedInput").toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});

describe("stretchPairingCode", () => {
  it("uses at least 131072 PBKDF2 iterations", () => {
    expect(PAIRING_CODE_PBKDF2_ITERATIONS).toBeGreaterThanOrEqual(131_072);
  });

  it("matches the known answer (PBKDF2-SHA256, 131072 iterations, checked with Python hashlib)", async () => {
    const key = await stretchPairingCode("7kq2-mxhd", salt);
    expect(toHex(key)).toBe("bd26a7102c7901effc70bad60e7677bad09201d84571cca0193c33c9e1064b4a");
  });

  it("rejects malformed codes and bad salts", async () => {
    expect(await asyncCodeOf(stretchPairingCode("7KQ2MXH0", salt))).toBe("MalformedInput");
    expect(await asyncCodeOf(stretchPairingCode("7KQ2MXHD", new Uint8Array(15)))).toBe(
      "InvalidArgument",
    );
    expect(await asyncCodeOf(stretchPairingCode("7KQ2MXHD", new Uint8Array(65)))).toBe(
      "InvalidArgument",
    );
  });
});
