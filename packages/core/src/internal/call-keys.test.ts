import fc from "fast-check";
import { expectCode } from "../../test/support.ts";
import { describe, expect, it } from "vitest";
import rfc from "../../test/vectors/srtp-rfc3711.json" with { type: "json" };
import { fromHex, toHex } from "./bytes.ts";
import {
  aesCmKeystream,
  createCallKeys,
  deriveSrtcpSessionKeys,
  deriveSrtpSessionKeys,
  splitSrtpMasterSecret,
  srtpPacketIv,
  SRTP_MASTER_SECRET_BYTES,
} from "./call-keys.ts";
import { CoreError } from "./errors.ts";

const hex = (text: string) => fromHex(text, "vector");
const upper = (bytes: Uint8Array) => toHex(bytes).toUpperCase();

describe("RFC 3711 test vectors (test/vectors/srtp-rfc3711.json)", () => {
  it("B.2: AES-CM keystream", () => {
    const v = rfc.aesCm;
    const iv = srtpPacketIv({
      sessionSalt: hex(v.sessionSalt),
      ssrc: v.ssrc,
      index: BigInt(v.rolloverCounter) * 65_536n + BigInt(v.sequenceNumber),
    });
    expect(upper(iv)).toBe(v.offset);
    const last = v.blocks.at(-1)!;
    const blocks = Number(BigInt(`0x${last.counter}`) - BigInt(`0x${v.offset}`)) + 1;
    const stream = aesCmKeystream(hex(v.sessionKey), iv, blocks * 16);
    for (const block of v.blocks) {
      const n = Number(BigInt(`0x${block.counter}`) - BigInt(`0x${v.offset}`));
      expect(upper(stream.subarray(n * 16, n * 16 + 16))).toBe(block.keystream);
      // Starting at that counter gives the same block.
      expect(upper(aesCmKeystream(hex(v.sessionKey), hex(block.counter), 16))).toBe(
        block.keystream,
      );
    }
  });

  it("B.3: key derivation (kdr 0)", () => {
    const v = rfc.keyDerivation;
    const keys = deriveSrtpSessionKeys({
      masterKey: hex(v.masterKey),
      masterSalt: hex(v.masterSalt),
    });
    expect(upper(keys.cipherKey)).toBe(v.cipherKey);
    expect(upper(keys.salt)).toBe(v.cipherSalt);
    expect(upper(keys.authKey)).toBe(v.authKey);
    // The IVs RFC 3711 lists, and the longer auth keystream.
    expect(upper(aesCmKeystream(hex(v.masterKey), hex(v.cipherKeyIv), 16))).toBe(v.cipherKey);
    expect(upper(aesCmKeystream(hex(v.masterKey), hex(v.cipherSaltIv), 14))).toBe(v.cipherSalt);
    expect(
      upper(aesCmKeystream(hex(v.masterKey), hex(v.authKeyIv), v.authKeyStream.length / 2)),
    ).toBe(v.authKeyStream);
    // With kdr 0 the index does not matter.
    const later = deriveSrtpSessionKeys({
      masterKey: hex(v.masterKey),
      masterSalt: hex(v.masterSalt),
      index: 123_456n,
    });
    expect(later).toEqual(keys);
  });

  it("cross-check: kdr 1 with a 48-bit index", () => {
    const v = rfc.crossCheck;
    const keys = deriveSrtpSessionKeys({
      masterKey: hex(v.masterKey),
      masterSalt: hex(v.masterSalt),
      index: BigInt(`0x${v.index}`),
      kdr: v.kdr,
    });
    expect(upper(keys.cipherKey)).toBe(v.cipherKey);
    expect(upper(keys.authKey)).toBe(v.authKey);
    expect(upper(keys.salt)).toBe(v.cipherSalt);
  });
});

describe("SRTP key derivation", () => {
  const master = splitSrtpMasterSecret(new Uint8Array(30).map((_, i) => i));

  it("changes keys per kdr epoch only", () => {
    const at = (index: bigint) => deriveSrtpSessionKeys({ ...master, index, kdr: 4 });
    expect(at(0n)).toEqual(at(3n));
    expect(at(4n).cipherKey).not.toEqual(at(3n).cipherKey);
  });

  it("derives distinct SRTCP keys with labels 3..5", () => {
    const rtp = deriveSrtpSessionKeys(master);
    const rtcp = deriveSrtcpSessionKeys(master);
    expect([rtcp.cipherKey.length, rtcp.authKey.length, rtcp.salt.length]).toEqual([16, 20, 14]);
    expect(rtcp.cipherKey).not.toEqual(rtp.cipherKey);
    expect(rtcp.authKey).not.toEqual(rtp.authKey);
    expect(rtcp.salt).not.toEqual(rtp.salt);
  });

  it("rejects bad parameters", () => {
    expectCode(() => deriveSrtpSessionKeys({ ...master, kdr: 3 }), "InvalidArgument");
    expectCode(() => deriveSrtpSessionKeys({ ...master, kdr: 2 ** 25 }), "InvalidArgument");
    expectCode(() => deriveSrtpSessionKeys({ ...master, index: 2n ** 48n }), "InvalidArgument");
    expectCode(() => deriveSrtpSessionKeys({ ...master, index: -1n }), "InvalidArgument");
    expectCode(
      () => deriveSrtpSessionKeys({ ...master, masterKey: new Uint8Array(15) }),
      "InvalidArgument",
    );
    expectCode(
      () => deriveSrtcpSessionKeys({ ...master, masterSalt: new Uint8Array(16) }),
      "InvalidArgument",
    );
    expectCode(() => aesCmKeystream(new Uint8Array(16), new Uint8Array(12), 16), "InvalidArgument");
    expectCode(
      () => aesCmKeystream(new Uint8Array(16), new Uint8Array(16), 2 ** 21),
      "InvalidArgument",
    );
  });

  it("builds the packet IV from salt, SSRC and index", () => {
    const iv = srtpPacketIv({
      sessionSalt: new Uint8Array(14),
      ssrc: 0x01020304,
      index: 0x0a0b0c0d0e0fn,
    });
    expect(toHex(iv)).toBe("00000000010203040a0b0c0d0e0f0000");
    expectCode(
      () => srtpPacketIv({ sessionSalt: new Uint8Array(14), ssrc: 2 ** 32, index: 0n }),
      "InvalidArgument",
    );
  });
});

describe("call keys", () => {
  it("makes one fresh 30-byte secret per callee device", () => {
    const secrets = createCallKeys(3);
    expect(secrets).toHaveLength(3);
    for (const s of secrets) expect(s.length).toBe(SRTP_MASTER_SECRET_BYTES);
    expect(new Set(secrets.map(toHex)).size).toBe(3);
    const byDevice = createCallKeys(["bob|1", "bob|2"]);
    expect([...byDevice.keys()]).toEqual(["bob|1", "bob|2"]);
    expect(toHex(byDevice.get("bob|1")!)).not.toBe(toHex(byDevice.get("bob|2")!));
  });

  it("uses the injected randomness and rejects bad requests", () => {
    let n = 0;
    const random = (length: number) => new Uint8Array(length).fill(++n);
    expect(createCallKeys([7, 8], { random }).get(8)).toEqual(new Uint8Array(30).fill(2));
    expectCode(() => createCallKeys(0), "InvalidArgument");
    expectCode(() => createCallKeys(1025), "InvalidArgument");
    expectCode(() => createCallKeys(1.5), "InvalidArgument");
    expectCode(() => createCallKeys([]), "InvalidArgument");
    expectCode(() => createCallKeys([1, 1]), "InvalidArgument");
    expectCode(() => createCallKeys(1, { random: () => new Uint8Array(29) }), "InvalidArgument");
  });

  it("splits a master secret into key and salt, strictly", () => {
    const secret = new Uint8Array(30).map((_, i) => i);
    const { masterKey, masterSalt } = splitSrtpMasterSecret(secret);
    expect(masterKey).toEqual(secret.subarray(0, 16));
    expect(masterSalt).toEqual(secret.subarray(16));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        if (bytes.length === 30) expect(splitSrtpMasterSecret(bytes).masterKey).toHaveLength(16);
        else expect(() => splitSrtpMasterSecret(bytes)).toThrow(CoreError);
      }),
      { numRuns: 150 },
    );
  });
});
