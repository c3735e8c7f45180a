import { Fingerprint, IdentityKeyPair, PublicKey } from "@signalapp/libsignal-client";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import vectors from "../../test/vectors/security-code.json" with { type: "json" };
import { fromHex, toHex, utf8 } from "./bytes.ts";
import { CoreError } from "./errors.ts";
import {
  SECURITY_CODE_ITERATIONS,
  SECURITY_CODE_SCANNABLE_BYTES,
  compareScannableCodes,
  computeSecurityCode,
  type SecurityCodeParty,
} from "./security-code.ts";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return CoreError.is(err) ? err.code : "not a CoreError";
  }
  return undefined;
}

const newKey = () => IdentityKeyPair.generate().publicKey.serialize();
const party = (stableId: string, deviceCount = 0): SecurityCodeParty => ({
  stableId,
  accountKey: newKey(),
  deviceKeys: Array.from({ length: deviceCount }, newKey),
});

function libsignal(local: SecurityCodeParty, remote: SecurityCodeParty) {
  const fp = Fingerprint.new(
    5200,
    1,
    utf8(local.stableId),
    PublicKey.deserialize(new Uint8Array(local.accountKey)),
    utf8(remote.stableId),
    PublicKey.deserialize(new Uint8Array(remote.accountKey)),
  );
  return {
    digits: fp.displayableFingerprint().toString(),
    scannable: toHex(fp.scannableFingerprint().toBuffer()),
  };
}

describe("security code = libsignal fingerprint for a single key", () => {
  it("reproduces libsignal's published v1 test vector", () => {
    // rust/protocol/src/fingerprint.rs, fingerprint_test_v1.
    const alice = {
      stableId: "+14152222222",
      accountKey: fromHex(
        "0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868",
        "a",
      ),
      deviceKeys: [],
    };
    const bob = {
      stableId: "+14153333333",
      accountKey: fromHex(
        "05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b",
        "b",
      ),
      deviceKeys: [],
    };
    const a = computeSecurityCode({ local: alice, remote: bob });
    const b = computeSecurityCode({ local: bob, remote: alice });
    expect(a.digits).toBe("300354477692869396892869876765458257569162576843440918079131");
    expect(b.digits).toBe(a.digits);
    expect(toHex(a.scannable)).toBe(
      "080112220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df" +
        "1a220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d",
    );
    expect(toHex(b.scannable)).toBe(
      "080112220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d" +
        "1a220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df",
    );
  });

  it("matches libsignal Fingerprint.new(5200, …) on random key pairs", () => {
    for (let i = 0; i < 4; i++) {
      const local = party(`local-${i}`);
      const remote = party(`remote-${i}-ü`);
      const ours = computeSecurityCode({ local, remote });
      const theirs = libsignal(local, remote);
      expect(ours.digits).toBe(theirs.digits);
      expect(toHex(ours.scannable)).toBe(theirs.scannable);
    }
  });
});

describe("security code vectors", () => {
  it("keeps the fixed iteration count", () => {
    expect(SECURITY_CODE_ITERATIONS).toBe(5200);
    expect(vectors.iterations).toBe(5200);
  });

  it.each(vectors.cases)("reproduces $name", (vector) => {
    const parse = (p: { stableId: string; accountKey: string; deviceKeys: string[] }) => ({
      stableId: p.stableId,
      accountKey: fromHex(p.accountKey, "key"),
      deviceKeys: p.deviceKeys.map((k) => fromHex(k, "key")),
    });
    const code = computeSecurityCode({ local: parse(vector.local), remote: parse(vector.remote) });
    expect(code.digits).toBe(vector.digits);
    expect(toHex(code.scannable)).toBe(vector.scannable);
  });
});

describe("extended security code", () => {
  const alice = party("alice", 2);
  const bob = party("bob", 1);
  const aliceView = computeSecurityCode({ local: alice, remote: bob });
  const bobView = computeSecurityCode({ local: bob, remote: alice });

  it("shows both parties the same 60 digits as 12 groups of 5", () => {
    expect(aliceView.digits).toMatch(/^\d{60}$/);
    expect(aliceView.groups).toHaveLength(12);
    expect(aliceView.groups.join("")).toBe(aliceView.digits);
    expect(aliceView.display).toBe(aliceView.groups.join(" "));
    expect(aliceView.display).toMatch(/^(\d{5} ){11}\d{5}$/);
    expect(bobView.display).toBe(aliceView.display);
    expect(aliceView.scannable).toHaveLength(SECURITY_CODE_SCANNABLE_BYTES);
  });

  it("matches when each side scans the other", () => {
    expect(compareScannableCodes(aliceView.scannable, bobView.scannable)).toBe(true);
    expect(compareScannableCodes(bobView.scannable, aliceView.scannable)).toBe(true);
    expect(compareScannableCodes(aliceView.scannable, aliceView.scannable)).toBe(false);
  });

  it("changes when a device key is added or the account key differs", () => {
    const more = { ...alice, deviceKeys: [...alice.deviceKeys, newKey()] };
    const withMore = computeSecurityCode({ local: more, remote: bob });
    expect(withMore.digits).not.toBe(aliceView.digits);
    expect(compareScannableCodes(withMore.scannable, bobView.scannable)).toBe(false);

    const mitm = computeSecurityCode({ local: bob, remote: { ...alice, accountKey: newKey() } });
    expect(mitm.digits).not.toBe(aliceView.digits);
    expect(compareScannableCodes(aliceView.scannable, mitm.scannable)).toBe(false);

    const renamed = computeSecurityCode({ local: { ...alice, stableId: "alice2" }, remote: bob });
    expect(renamed.digits).not.toBe(aliceView.digits);
  });

  it("does not depend on the order of device keys", () => {
    const reversed = { ...alice, deviceKeys: [...alice.deviceKeys].reverse() };
    const code = computeSecurityCode({ local: reversed, remote: bob });
    expect(code.digits).toBe(aliceView.digits);
    expect(toHex(code.scannable)).toBe(toHex(aliceView.scannable));
  });

  it("differs from the single-key code", () => {
    const single = computeSecurityCode({
      local: { ...alice, deviceKeys: [] },
      remote: { ...bob, deviceKeys: [] },
    });
    expect(single.digits).not.toBe(aliceView.digits);
  });
});

describe("security code input validation", () => {
  const good = party("alice", 1);
  const other = party("bob");
  const compute = (local: SecurityCodeParty) =>
    codeOf(() => computeSecurityCode({ local, remote: other }));
  const wrongType = new Uint8Array(good.accountKey);
  wrongType[0] = 0x06;

  it.each([
    ["a 32-byte account key", { ...good, accountKey: good.accountKey.subarray(1) }, "InvalidKey"],
    ["a 34-byte account key", { ...good, accountKey: new Uint8Array(34).fill(5) }, "InvalidKey"],
    ["an account key of type 6", { ...good, accountKey: wrongType }, "InvalidKey"],
    ["a bad device key", { ...good, deviceKeys: [new Uint8Array(33)] }, "InvalidKey"],
    [
      "repeated device keys",
      { ...good, deviceKeys: [good.deviceKeys[0]!, good.deviceKeys[0]!] },
      "InvalidArgument",
    ],
    [
      "128 device keys",
      { ...good, deviceKeys: Array.from({ length: 128 }, () => good.accountKey) },
      "InvalidArgument",
    ],
    ["an empty stable id", { ...good, stableId: "" }, "InvalidArgument"],
    ["a 257-byte stable id", { ...good, stableId: "x".repeat(257) }, "InvalidArgument"],
  ] as const)("rejects %s", (_name, local, expected) => {
    expect(compute(local)).toBe(expected);
  });

  it("rejects malformed scannable codes", () => {
    const mine = computeSecurityCode({ local: good, remote: other }).scannable;
    const theirs = computeSecurityCode({ local: other, remote: good }).scannable;
    const v2 = new Uint8Array(theirs);
    v2[1] = 2;
    const badHeader = new Uint8Array(theirs);
    badHeader[38] = 0x1b;
    for (const bad of [v2, badHeader, theirs.subarray(1), new Uint8Array(74)]) {
      expect(codeOf(() => compareScannableCodes(mine, bad))).toBe("MalformedInput");
      expect(codeOf(() => compareScannableCodes(bad, mine))).toBe("MalformedInput");
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        const code = codeOf(() => compareScannableCodes(mine, bytes));
        expect(code === "MalformedInput" || code === undefined).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});
