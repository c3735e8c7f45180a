import { create, toBinary } from "@bufbuild/protobuf";
import { PrivateKey, PublicKey } from "@signalapp/libsignal-client";
import fc from "fast-check";
import { expectCode } from "../../test/support.ts";
import { describe, expect, it } from "vitest";
import vectors from "../../test/vectors/adv.json" with { type: "json" };
import {
  DeviceListSchema,
  SignedDeviceIdentitySchema,
  SignedDeviceListSchema,
} from "../gen/pairwise_pb.ts";
import { acceptDeviceIdentity, createPrimaryDeviceIdentity, signDeviceIdentity } from "./adv.ts";
import { fromHex, toHex } from "./bytes.ts";
import {
  DEVICE_LIST_MAX_AGE_MS,
  deviceListSignatureInput,
  nextDeviceListTimestamp,
  selectTrustedDevices,
  signDeviceList,
  verifySignedDeviceList,
  type CandidateDevice,
  type DeviceListInfo,
} from "./device-list.ts";
import { CoreError } from "./errors.ts";
import { decodeProto } from "./proto.ts";

const NOW = 1_750_000_000_000;
const DAY = 24 * 60 * 60 * 1000;
const account = PrivateKey.generate();
const accountPublic = account.getPublicKey();
const linkSecret = new Uint8Array(32).fill(9);

interface Device extends CandidateDevice {
  readonly privateKey: PrivateKey;
}

function primaryDevice(signer = account): Device {
  const privateKey = PrivateKey.generate();
  const made = createPrimaryDeviceIdentity({
    accountPrivate: signer,
    devicePrivate: privateKey,
    accountId: "alice",
    createdAt: NOW - DAY,
  });
  return {
    deviceId: 1,
    identityPublic: privateKey.getPublicKey().serialize(),
    signedDeviceIdentity: made.signed,
    privateKey,
  };
}

function companionDevice(
  deviceId: number,
  keyIndex: number,
  opts: { signer?: PrivateKey; accountId?: string } = {},
): Device {
  const privateKey = PrivateKey.generate();
  const signer = opts.signer ?? account;
  const offered = signDeviceIdentity({
    accountPrivate: signer,
    identity: { accountId: opts.accountId ?? "alice", deviceId, keyIndex, createdAt: NOW - DAY },
    deviceIdentityPublic: privateKey.getPublicKey(),
    linkSecret,
  });
  const done = acceptDeviceIdentity({
    signed: offered,
    accountPublic: signer.getPublicKey(),
    devicePrivate: privateKey,
    linkSecret,
  });
  return {
    deviceId,
    identityPublic: privateKey.getPublicKey().serialize(),
    signedDeviceIdentity: done.signed,
    privateKey,
  };
}

const list = (over: Partial<DeviceListInfo> = {}): DeviceListInfo => ({
  accountId: "alice",
  timestamp: NOW - DAY,
  currentKeyIndex: 2,
  validKeyIndexes: [0, 1, 2],
  ...over,
});

const verify = (
  bytes: Uint8Array,
  over: Partial<Parameters<typeof verifySignedDeviceList>[1]> = {},
) => verifySignedDeviceList(bytes, { accountPublic, accountId: "alice", now: NOW, ...over });

describe("device list known answers (test/vectors/adv.json)", () => {
  const vectorAccount = PrivateKey.deserialize(fromHex(vectors.accountPrivate, "vector"));
  for (const v of vectors.deviceLists) {
    it(`${v.name}: details and signature input; stored list verifies`, () => {
      const signed = decodeProto(
        SignedDeviceListSchema,
        signDeviceList(vectorAccount, v.list),
        "test",
      );
      expect(toHex(signed.details)).toBe(v.details);
      expect(toHex(deviceListSignatureInput(signed.details))).toBe(v.signatureInput);
      const info = verifySignedDeviceList(fromHex(v.signed, "vector"), {
        accountPublic: PublicKey.deserialize(fromHex(vectors.accountPublic, "vector")),
        accountId: v.list.accountId,
        now: v.list.timestamp,
      });
      expect(info).toEqual(v.list);
    });
  }
});

describe("signDeviceList / verifySignedDeviceList", () => {
  it("round-trips, sorting and de-duplicating key indexes", () => {
    const bytes = signDeviceList(account, list({ validKeyIndexes: [2, 0, 1, 2] }));
    expect(verify(bytes)).toEqual(list());
  });

  it("refuses invalid lists when signing", () => {
    expectCode(() => signDeviceList(account, list({ validKeyIndexes: [1, 2] })), "InvalidArgument");
    expectCode(() => signDeviceList(account, list({ validKeyIndexes: [0, 3] })), "InvalidArgument");
    expectCode(
      () => signDeviceList(account, list({ validKeyIndexes: [0, -1] })),
      "InvalidArgument",
    );
    expectCode(() => signDeviceList(account, list({ accountId: "A" })), "InvalidArgument");
    expectCode(() => signDeviceList(account, list({ timestamp: -1 })), "InvalidArgument");
    const many = Array.from({ length: 128 }, (_, i) => i);
    expectCode(
      () => signDeviceList(account, list({ currentKeyIndex: 200, validKeyIndexes: many })),
      "InvalidArgument",
    );
  });

  it("rejects a foreign key, another account and tampering", () => {
    const bytes = signDeviceList(account, list());
    expectCode(
      () => verify(bytes, { accountPublic: PrivateKey.generate().getPublicKey() }),
      "BadSignature",
    );
    expectCode(() => verify(signDeviceList(account, list({ accountId: "bob" }))), "BadSignature");
    const signed = decodeProto(SignedDeviceListSchema, bytes, "test");
    const details = Uint8Array.from(signed.details);
    details[3] = (details[3] ?? 0) ^ 1;
    const forged = toBinary(
      SignedDeviceListSchema,
      create(SignedDeviceListSchema, { ...signed, details }),
    );
    expectCode(() => verify(forged), "BadSignature");
  });

  it("enforces no-rollback, expiry and a bounded future", () => {
    const bytes = signDeviceList(account, list());
    expectCode(() => verify(bytes, { lastSeenTimestamp: NOW - DAY + 1 }), "StaleDeviceList");
    expect(verify(bytes, { lastSeenTimestamp: NOW - DAY }).timestamp).toBe(NOW - DAY); // same list again
    expectCode(
      () => verify(bytes, { now: NOW - DAY + DEVICE_LIST_MAX_AGE_MS + 1 }),
      "ExpiredDeviceList",
    );
    expect(verify(bytes, { now: NOW - DAY + DEVICE_LIST_MAX_AGE_MS }).timestamp).toBe(NOW - DAY);
    expectCode(() => verify(bytes, { maxAgeMs: DAY / 2 }), "ExpiredDeviceList");
    expectCode(() => verify(bytes, { maxAgeMs: DEVICE_LIST_MAX_AGE_MS + 1 }), "InvalidArgument");
    expectCode(
      () => verify(signDeviceList(account, list({ timestamp: NOW + DAY + 1 }))),
      "MalformedInput",
    );
    expect(verify(signDeviceList(account, list({ timestamp: NOW + DAY }))).timestamp).toBe(
      NOW + DAY,
    );
  });

  it("rejects validly signed but non-canonical lists", () => {
    const raw = (validKeyIndexes: number[]) => {
      const details = toBinary(
        DeviceListSchema,
        create(DeviceListSchema, {
          accountId: "alice",
          timestamp: BigInt(NOW),
          currentKeyIndex: 5,
          validKeyIndexes,
        }),
      );
      const accountSignature = account.sign(deviceListSignatureInput(details));
      return toBinary(
        SignedDeviceListSchema,
        create(SignedDeviceListSchema, { details, accountSignature }),
      );
    };
    expect(verify(raw([0, 5])).validKeyIndexes).toEqual([0, 5]);
    expectCode(() => verify(raw([5, 0])), "MalformedInput");
    expectCode(() => verify(raw([0, 0, 5])), "MalformedInput");
    expectCode(() => verify(raw([0, 6])), "MalformedInput");
    expectCode(() => verify(raw([1])), "MalformedInput");
  });

  it("nextDeviceListTimestamp strictly increases", () => {
    expect(nextDeviceListTimestamp(undefined, 10)).toBe(10);
    expect(nextDeviceListTimestamp(5, 10)).toBe(10);
    expect(nextDeviceListTimestamp(10, 10)).toBe(11);
    expect(nextDeviceListTimestamp(20, 10)).toBe(21);
  });

  it("throws only CoreError for random and mutated bytes", () => {
    const bytes = signDeviceList(account, list());
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.nat({ max: bytes.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        (random, at, xor) => {
          expect(() => verify(random)).toThrow(CoreError);
          const mutated = Uint8Array.from(bytes);
          mutated[at] = (mutated[at] ?? 0) ^ xor;
          try {
            expect(verify(mutated)).toEqual(list());
          } catch (err) {
            expect(err).toBeInstanceOf(CoreError);
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe("selectTrustedDevices", () => {
  const primary = primaryDevice();
  const second = companionDevice(2, 1);
  const third = companionDevice(3, 2);
  const listBytes = signDeviceList(account, list());

  const select = (
    devices: readonly CandidateDevice[],
    over: Partial<Parameters<typeof selectTrustedDevices>[0]> = {},
  ) =>
    selectTrustedDevices({
      accountId: "alice",
      accountPublic,
      signedDeviceList: listBytes,
      devices,
      now: NOW,
      ...over,
    });
  const ids = (r: ReturnType<typeof select>) => r.trusted.map((d) => d.deviceId);

  it("trusts every properly signed, listed device", () => {
    const r = select([third, primary, second]);
    expect(r.trusted).toEqual([
      { deviceId: 1, keyIndex: 0, identityPublic: primary.identityPublic },
      { deviceId: 2, keyIndex: 1, identityPublic: second.identityPublic },
      { deviceId: 3, keyIndex: 2, identityPublic: third.identityPublic },
    ]);
    expect(r.rejected).toEqual([]);
    expect(r.list).toEqual(list());
    expect(r.listExpired).toBe(false);
  });

  it("rejects a server-injected device signed by another account key", () => {
    const injected = companionDevice(4, 2, { signer: PrivateKey.generate() });
    const r = select([primary, injected]);
    expect(ids(r)).toEqual([1]);
    expect(r.rejected).toEqual([{ deviceId: 4, reason: "bad-account-signature" }]);
  });

  it("rejects a server-injected device without signatures", () => {
    const key = PrivateKey.generate().getPublicKey().serialize();
    const empty = { deviceId: 5, identityPublic: key, signedDeviceIdentity: new Uint8Array(0) };
    const noDeviceSig = decodeProto(
      SignedDeviceIdentitySchema,
      second.signedDeviceIdentity,
      "test",
    );
    const stripped = {
      ...second,
      signedDeviceIdentity: toBinary(
        SignedDeviceIdentitySchema,
        create(SignedDeviceIdentitySchema, { ...noDeviceSig, deviceSignature: new Uint8Array(0) }),
      ),
    };
    expect(select([empty]).rejected).toEqual([{ deviceId: 5, reason: "malformed" }]);
    expect(select([stripped]).rejected).toEqual([{ deviceId: 2, reason: "bad-device-signature" }]);
  });

  it("rejects a real identity presented with the server's own key", () => {
    const swapped = { ...second, identityPublic: PrivateKey.generate().getPublicKey().serialize() };
    expect(select([swapped]).rejected).toEqual([{ deviceId: 2, reason: "bad-account-signature" }]);
  });

  it("rejects a device removed from the list", () => {
    const r = select([primary, second, third], {
      signedDeviceList: signDeviceList(account, list({ validKeyIndexes: [0, 2] })),
    });
    expect(ids(r)).toEqual([1, 3]);
    expect(r.rejected).toEqual([{ deviceId: 2, reason: "not-in-device-list" }]);
  });

  it("rejects wrong device ids, wrong accounts, malformed keys and duplicates", () => {
    const moved = { ...second, deviceId: 9 };
    const mallory = companionDevice(4, 2, { accountId: "mallory" });
    const badKey = { ...third, identityPublic: third.identityPublic.subarray(1) };
    const badId = { ...third, deviceId: 200 };
    const r = select([moved, mallory, badKey, badId]);
    expect(r.trusted).toEqual([]);
    expect(r.rejected).toEqual([
      { deviceId: 9, reason: "wrong-device-id" },
      { deviceId: 4, reason: "wrong-account" },
      { deviceId: 3, reason: "malformed" },
      { deviceId: 200, reason: "malformed" },
    ]);
    const twice = select([primary, second, second]);
    expect(ids(twice)).toEqual([1]);
    expect(twice.rejected).toEqual([
      { deviceId: 2, reason: "duplicate" },
      { deviceId: 2, reason: "duplicate" },
    ]);
    // The account signed two devices with one key index: trust neither.
    const clash = select([primary, second, companionDevice(4, 1)]);
    expect(ids(clash)).toEqual([1]);
    expect(clash.rejected.map((x) => x.reason)).toEqual(["duplicate", "duplicate"]);
  });

  it("throws on a bad list signature and on a rolled-back list", () => {
    const foreign = signDeviceList(PrivateKey.generate(), list());
    expectCode(() => select([primary], { signedDeviceList: foreign }), "BadSignature");
    expectCode(
      () =>
        select([primary], {
          signedDeviceList: signDeviceList(account, list({ accountId: "bob" })),
        }),
      "BadSignature",
    );
    expectCode(() => select([primary], { lastSeenListTimestamp: NOW }), "StaleDeviceList");
    expect(ids(select([primary], { lastSeenListTimestamp: NOW - DAY }))).toEqual([1]);
  });

  it("with an expired list talks only to the primary", () => {
    const r = select([primary, second, third], { now: NOW - DAY + DEVICE_LIST_MAX_AGE_MS + 1 });
    expect(r.listExpired).toBe(true);
    expect(r.list).toEqual(list());
    expect(ids(r)).toEqual([1]);
    expect(r.rejected).toEqual([
      { deviceId: 2, reason: "list-expired" },
      { deviceId: 3, reason: "list-expired" },
    ]);
    // The primary must still verify.
    const fakePrimary = primaryDevice(PrivateKey.generate());
    const r2 = select([fakePrimary], { now: NOW + DEVICE_LIST_MAX_AGE_MS });
    expect(r2.trusted).toEqual([]);
    expect(r2.rejected).toEqual([{ deviceId: 1, reason: "bad-account-signature" }]);
  });

  it("without a list trusts only the primary", () => {
    const r = select([primary, second], { signedDeviceList: null });
    expect(r.list).toBeNull();
    expect(ids(r)).toEqual([1]);
    expect(r.rejected).toEqual([{ deviceId: 2, reason: "not-in-device-list" }]);
  });

  it("never throws for random device bytes; list bytes throw only CoreError", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.uint8Array({ minLength: 33, maxLength: 33 }),
        (random, key) => {
          const r = select([
            primary,
            { deviceId: 2, identityPublic: key, signedDeviceIdentity: random },
          ]);
          expect(ids(r)).toEqual([1]);
          expect(r.rejected).toHaveLength(1);
          expect(() => select([primary], { signedDeviceList: random })).toThrow(CoreError);
        },
      ),
      { numRuns: 150 },
    );
  });
});
