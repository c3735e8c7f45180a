import { create, toBinary } from "@bufbuild/protobuf";
import { PrivateKey, PublicKey } from "@signalapp/libsignal-client";
import fc from "fast-check";
import { expectCode } from "../../test/support.ts";
import { describe, expect, it } from "vitest";
import vectors from "../../test/vectors/adv.json" with { type: "json" };
import { SignedDeviceIdentitySchema } from "../gen/pairwise_pb.ts";
import {
  acceptDeviceIdentity,
  accountSignatureInput,
  createPrimaryDeviceIdentity,
  deviceSignatureInput,
  isValidAccountId,
  signDeviceIdentity,
  verifySignedDeviceIdentity,
  type DeviceIdentityInfo,
} from "./adv.ts";
import { concatBytes, fromHex, toHex } from "./bytes.ts";
import { CoreError } from "./errors.ts";
import { decodeProto } from "./proto.ts";

const account = PrivateKey.generate();
const primary = PrivateKey.generate();
const companion = PrivateKey.generate();
const linkSecret = new Uint8Array(32).fill(7);
const companionInfo: DeviceIdentityInfo = {
  accountId: "alice",
  deviceId: 2,
  keyIndex: 1,
  createdAt: 1_700_000_000_000,
};

function linkCompanion(info = companionInfo, secret = linkSecret) {
  const offered = signDeviceIdentity({
    accountPrivate: account,
    identity: info,
    deviceIdentityPublic: companion.getPublicKey(),
    linkSecret: secret,
  });
  return acceptDeviceIdentity({
    signed: offered,
    accountPublic: account.getPublicKey(),
    devicePrivate: companion,
    linkSecret: secret,
    expected: { accountId: info.accountId, deviceId: info.deviceId },
  });
}

const verifyCompanion = (bytes: Uint8Array) =>
  verifySignedDeviceIdentity(bytes, {
    accountPublic: account.getPublicKey(),
    deviceIdentityPublic: companion.getPublicKey(),
    accountId: "alice",
    deviceId: 2,
  });

/** Re-encodes a SignedDeviceIdentity with some fields replaced. */
function tamper(bytes: Uint8Array, change: Record<string, Uint8Array>): Uint8Array {
  const signed = decodeProto(SignedDeviceIdentitySchema, bytes, "test");
  return toBinary(
    SignedDeviceIdentitySchema,
    create(SignedDeviceIdentitySchema, { ...signed, ...change }),
  );
}

describe("ADV known answers (test/vectors/adv.json)", () => {
  const accountPublic = PublicKey.deserialize(fromHex(vectors.accountPublic, "vector"));
  it("derives the account public key from the fixed private key", () => {
    const key = PrivateKey.deserialize(fromHex(vectors.accountPrivate, "vector"));
    expect(toHex(key.getPublicKey().serialize())).toBe(vectors.accountPublic);
  });

  for (const v of vectors.deviceIdentities) {
    it(`${v.name}: details, signature inputs and link HMAC`, () => {
      const devicePrivate = PrivateKey.deserialize(fromHex(v.devicePrivate, "vector"));
      const devicePublic = devicePrivate.getPublicKey();
      expect(toHex(devicePublic.serialize())).toBe(v.devicePublic);
      const details = fromHex(v.details, "vector");
      expect(toHex(accountSignatureInput(details, devicePublic))).toBe(v.accountSignatureInput);
      expect(toHex(deviceSignatureInput(details, devicePublic, accountPublic))).toBe(
        v.deviceSignatureInput,
      );
      const accountPrivate = PrivateKey.deserialize(fromHex(vectors.accountPrivate, "vector"));
      const made =
        v.identity.deviceId === 1
          ? createPrimaryDeviceIdentity({
              accountPrivate,
              devicePrivate,
              accountId: v.identity.accountId,
              createdAt: v.identity.createdAt,
            }).signed
          : signDeviceIdentity({
              accountPrivate,
              identity: v.identity,
              deviceIdentityPublic: devicePublic,
              linkSecret: fromHex(vectors.linkSecret, "vector"),
            });
      const signed = decodeProto(SignedDeviceIdentitySchema, made, "test");
      expect(toHex(signed.details)).toBe(v.details);
      expect(toHex(signed.linkHmac)).toBe(v.linkHmac);
    });

    it(`${v.name}: the stored signed identity verifies`, () => {
      const devicePublic = PublicKey.deserialize(fromHex(v.devicePublic, "vector"));
      const info = verifySignedDeviceIdentity(fromHex(v.signed, "vector"), {
        accountPublic,
        deviceIdentityPublic: devicePublic,
        accountId: v.identity.accountId,
      });
      expect(info).toEqual(v.identity);
    });
  }
});

describe("account ids", () => {
  it("accepts the documented charset only", () => {
    for (const ok of ["a", "alice", "bob.smith_2-x", "0", "a".repeat(64)])
      expect(isValidAccountId(ok)).toBe(true);
    for (const bad of ["", "Alice", "a b", "a/b", "ä", "a".repeat(65), "a\n"])
      expect(isValidAccountId(bad)).toBe(false);
    expect(isValidAccountId(5)).toBe(false);
  });
});

describe("primary identity", () => {
  it("signs itself as device 1, key index 0, without HMAC", () => {
    const made = createPrimaryDeviceIdentity({
      accountPrivate: account,
      devicePrivate: primary,
      accountId: "alice",
      createdAt: 5,
    });
    expect(made.info).toEqual({ accountId: "alice", deviceId: 1, keyIndex: 0, createdAt: 5 });
    expect(decodeProto(SignedDeviceIdentitySchema, made.signed, "test").linkHmac.length).toBe(0);
    const info = verifySignedDeviceIdentity(made.signed, {
      accountPublic: account.getPublicKey(),
      deviceIdentityPublic: primary.getPublicKey(),
      deviceId: 1,
    });
    expect(info).toEqual(made.info);
  });

  it("rejects invalid inputs", () => {
    const base = {
      accountPrivate: account,
      devicePrivate: primary,
      accountId: "alice",
      createdAt: 0,
    };
    expectCode(
      () => createPrimaryDeviceIdentity({ ...base, accountId: "Alice" }),
      "InvalidArgument",
    );
    expectCode(() => createPrimaryDeviceIdentity({ ...base, createdAt: -1 }), "InvalidArgument");
    expectCode(() => createPrimaryDeviceIdentity({ ...base, createdAt: 1.5 }), "InvalidArgument");
    expectCode(
      () => createPrimaryDeviceIdentity({ ...base, createdAt: 2 ** 53 }),
      "InvalidArgument",
    );
  });
});

describe("linking a companion", () => {
  it("round-trips: primary signs, companion accepts, contacts verify", () => {
    const done = linkCompanion();
    expect(done.info).toEqual(companionInfo);
    expect(verifyCompanion(done.signed)).toEqual(companionInfo);
  });

  it("refuses invalid identities on the signing side", () => {
    const sign = (identity: DeviceIdentityInfo, secret?: Uint8Array) =>
      signDeviceIdentity({
        accountPrivate: account,
        identity,
        deviceIdentityPublic: companion.getPublicKey(),
        ...(secret === undefined ? {} : { linkSecret: secret }),
      });
    expectCode(() => sign({ ...companionInfo, deviceId: 1, keyIndex: 0 }), "InvalidArgument");
    expectCode(() => sign({ ...companionInfo, deviceId: 128 }), "InvalidArgument");
    expectCode(() => sign({ ...companionInfo, deviceId: 0 }), "InvalidArgument");
    expectCode(() => sign({ ...companionInfo, keyIndex: 0 }), "InvalidArgument");
    expectCode(() => sign({ ...companionInfo, keyIndex: 2 ** 32 }), "InvalidArgument");
    expectCode(() => sign({ ...companionInfo, accountId: "" }), "InvalidArgument");
    expectCode(() => sign(companionInfo, new Uint8Array(31)), "InvalidArgument");
    expect(sign(companionInfo).length).toBeGreaterThan(0);
  });

  it("companion rejects a wrong link secret, a foreign account key and wrong expectations", () => {
    const offered = signDeviceIdentity({
      accountPrivate: account,
      identity: companionInfo,
      deviceIdentityPublic: companion.getPublicKey(),
      linkSecret,
    });
    const accept = (over: Partial<Parameters<typeof acceptDeviceIdentity>[0]>) =>
      acceptDeviceIdentity({
        signed: offered,
        accountPublic: account.getPublicKey(),
        devicePrivate: companion,
        linkSecret,
        ...over,
      });
    expectCode(() => accept({ linkSecret: new Uint8Array(32) }), "BadSignature");
    expectCode(() => accept({ linkSecret: new Uint8Array(16) }), "InvalidArgument");
    expectCode(
      () => accept({ accountPublic: PrivateKey.generate().getPublicKey() }),
      "BadSignature",
    );
    expectCode(() => accept({ devicePrivate: PrivateKey.generate() }), "BadSignature");
    expectCode(() => accept({ expected: { accountId: "bob" } }), "UntrustedDevice");
    expectCode(() => accept({ expected: { deviceId: 3 } }), "UntrustedDevice");
    expectCode(
      () => accept({ signed: tamper(offered, { linkHmac: new Uint8Array(0) }) }),
      "BadSignature",
    );
    // Already carrying a device signature: not an offer.
    expectCode(() => accept({ signed: linkCompanion().signed }), "MalformedInput");
    expect(accept({}).info).toEqual(companionInfo);
  });

  it("an offer without HMAC cannot be accepted (the primary must prove it saw the QR)", () => {
    const offered = signDeviceIdentity({
      accountPrivate: account,
      identity: companionInfo,
      deviceIdentityPublic: companion.getPublicKey(),
    });
    expectCode(
      () =>
        acceptDeviceIdentity({
          signed: offered,
          accountPublic: account.getPublicKey(),
          devicePrivate: companion,
          linkSecret,
        }),
      "BadSignature",
    );
  });
});

describe("verifySignedDeviceIdentity", () => {
  const done = linkCompanion();
  const signed = decodeProto(SignedDeviceIdentitySchema, done.signed, "test");

  it("requires the device signature", () => {
    expectCode(
      () => verifyCompanion(tamper(done.signed, { deviceSignature: new Uint8Array(0) })),
      "BadSignature",
    );
  });

  it("rejects tampered details and signatures", () => {
    const details = Uint8Array.from(signed.details);
    details[details.length - 1] = (details[details.length - 1] ?? 0) ^ 1;
    expectCode(() => verifyCompanion(tamper(done.signed, { details })), "BadSignature");
    for (const field of ["accountSignature", "deviceSignature"] as const) {
      const sig = Uint8Array.from(signed[field]);
      sig[10] = (sig[10] ?? 0) ^ 0x40;
      expectCode(() => verifyCompanion(tamper(done.signed, { [field]: sig })), "BadSignature");
      expectCode(
        () => verifyCompanion(tamper(done.signed, { [field]: sig.subarray(1) })),
        "MalformedInput",
      );
    }
  });

  it("rejects the wrong keys and the wrong account or device id", () => {
    const other = PrivateKey.generate().getPublicKey();
    const opts = {
      accountPublic: account.getPublicKey(),
      deviceIdentityPublic: companion.getPublicKey(),
    };
    expectCode(
      () => verifySignedDeviceIdentity(done.signed, { ...opts, accountPublic: other }),
      "BadSignature",
    );
    expectCode(
      () => verifySignedDeviceIdentity(done.signed, { ...opts, deviceIdentityPublic: other }),
      "BadSignature",
    );
    expectCode(
      () => verifySignedDeviceIdentity(done.signed, { ...opts, accountId: "bob" }),
      "UntrustedDevice",
    );
    expectCode(
      () => verifySignedDeviceIdentity(done.signed, { ...opts, deviceId: 3 }),
      "UntrustedDevice",
    );
  });

  it("rejects validly signed but non-canonical or invalid details", () => {
    const signRaw = (details: Uint8Array) =>
      toBinary(
        SignedDeviceIdentitySchema,
        create(SignedDeviceIdentitySchema, {
          details,
          accountSignature: account.sign(accountSignatureInput(details, companion.getPublicKey())),
          deviceSignature: companion.sign(
            deviceSignatureInput(details, companion.getPublicKey(), account.getPublicKey()),
          ),
        }),
      );
    expect(verifyCompanion(signRaw(signed.details))).toEqual(companionInfo);
    // An unknown field 15 (varint 1) appended.
    expectCode(
      () => verifyCompanion(signRaw(concatBytes(signed.details, Uint8Array.of(0x78, 0x01)))),
      "MalformedInput",
    );
    // device_id 0 (field 2 = 0, explicitly encoded): invalid and non-canonical.
    expectCode(
      () => verifyCompanion(signRaw(concatBytes(signed.details, Uint8Array.of(0x10, 0x00)))),
      "MalformedInput",
    );
    expectCode(() => verifyCompanion(signRaw(Uint8Array.of(0xff))), "MalformedInput");
  });

  it("throws only CoreError for random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        expect(() => verifyCompanion(bytes)).toThrow(CoreError);
        expect(() =>
          acceptDeviceIdentity({
            signed: bytes,
            accountPublic: account.getPublicKey(),
            devicePrivate: companion,
            linkSecret,
          }),
        ).toThrow(CoreError);
      }),
      { numRuns: 150 },
    );
  });

  it("mutated bytes either fail with CoreError or still say exactly the same", () => {
    fc.assert(
      fc.property(
        fc.nat({ max: done.signed.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        fc.nat({ max: 3 }),
        (at, xor, cut) => {
          const mutated = Uint8Array.from(done.signed);
          mutated[at] = (mutated[at] ?? 0) ^ xor;
          for (const bytes of [mutated, done.signed.subarray(0, done.signed.length - cut - 1)]) {
            try {
              expect(verifyCompanion(bytes)).toEqual(companionInfo);
            } catch (err) {
              expect(err).toBeInstanceOf(CoreError);
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
