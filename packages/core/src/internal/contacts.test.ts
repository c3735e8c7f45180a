import { IdentityKeyPair } from "@signalapp/libsignal-client";
import { describe, expect, it } from "vitest";
import { KeyDirectory, createTestDevice, type TestDevice } from "../../test/support.ts";
import { acceptDeviceIdentity, createPrimaryDeviceIdentity, signDeviceIdentity } from "./adv.ts";
import { acceptAccountKeyChange, verifyDevices, type DeviceClaim } from "./contacts.ts";
import { signDeviceList } from "./device-list.ts";
import { CoreError } from "./errors.ts";

const DAY = 24 * 60 * 60 * 1000;
const T0 = 1_800_000_000_000;

/** An account: an account key held by the primary, devices signed by it, a signed list. */
function account(
  accountId: string,
  devices: TestDevice[],
  keyIndexes: number[] = devices.map((_, i) => i),
  accountKey = IdentityKeyPair.generate(),
) {
  const signed = devices.map((d, i) => {
    if (d.address.deviceId === 1) {
      return createPrimaryDeviceIdentity({
        accountPrivate: accountKey.privateKey,
        devicePrivate: d.crypto.identity.privateKey,
        accountId,
        createdAt: T0,
      }).signed;
    }
    const secret = new Uint8Array(32).fill(i);
    const offer = signDeviceIdentity({
      accountPrivate: accountKey.privateKey,
      identity: {
        accountId,
        deviceId: d.address.deviceId,
        keyIndex: keyIndexes[i]!,
        createdAt: T0,
      },
      deviceIdentityPublic: d.crypto.identity.publicKey,
      linkSecret: secret,
    });
    return acceptDeviceIdentity({
      signed: offer,
      accountPublic: accountKey.publicKey,
      devicePrivate: d.crypto.identity.privateKey,
      linkSecret: secret,
    }).signed;
  });
  const list = (timestamp: number, valid = keyIndexes) =>
    signDeviceList(accountKey.privateKey, {
      accountId,
      timestamp,
      currentKeyIndex: Math.max(...keyIndexes),
      validKeyIndexes: valid,
    });
  const claim = (
    signedDeviceList: Uint8Array | null,
    extra: DeviceClaim["devices"] = [],
  ): DeviceClaim => ({
    accountId,
    accountPublic: accountKey.publicKey.serialize(),
    signedDeviceList,
    devices: [
      ...devices.map((d, i) => ({
        deviceId: d.address.deviceId,
        identityPublic: d.crypto.identityPublic,
        signedDeviceIdentity: signed[i]!,
      })),
      ...extra,
    ],
  });
  return { accountKey, list, claim };
}

describe("verifying a contact's devices (TOFU + ADV, fail closed)", () => {
  const keys = new KeyDirectory();
  const alice = createTestDevice({ accountId: "alice", deviceId: 1 }, keys);
  const bob = [1, 2, 3].map((d) => createTestDevice({ accountId: "bob", deviceId: d }, keys));

  it("trusts a new contact on first use and every device its account key signed", () => {
    const b = account("bob", bob);
    const r = verifyDevices(alice.crypto.state, b.claim(b.list(T0)), { now: T0 });
    expect(r.event).toEqual({ type: "new-contact", accountId: "bob" });
    expect(r.trusted.map((d) => d.deviceId)).toEqual([1, 2, 3]);
    expect(r.rejected).toEqual([]);
  });

  it("rejects a server-injected device: valid keys, but no signature by the account key", () => {
    const state = createTestDevice({ accountId: "alice", deviceId: 2 }, keys).crypto.state;
    const b = account("bob", bob);
    const intruder = createTestDevice({ accountId: "bob", deviceId: 4 }, keys);
    const serverKey = IdentityKeyPair.generate();
    const forged = signDeviceIdentity({
      accountPrivate: serverKey.privateKey,
      identity: { accountId: "bob", deviceId: 4, keyIndex: 3, createdAt: T0 },
      deviceIdentityPublic: intruder.crypto.identity.publicKey,
    });
    const r = verifyDevices(
      state,
      b.claim(b.list(T0), [
        {
          deviceId: 4,
          identityPublic: intruder.crypto.identityPublic,
          signedDeviceIdentity: forged,
        },
        {
          deviceId: 5,
          identityPublic: intruder.crypto.identityPublic,
          signedDeviceIdentity: new Uint8Array(0),
        },
      ]),
      { now: T0 },
    );
    expect(r.trusted.map((d) => d.deviceId)).toEqual([1, 2, 3]);
    expect(r.rejected.map((x) => x.deviceId).sort()).toEqual([4, 5]);
  });

  it("refuses a rolled-back list and keeps only the primary under an expired one", () => {
    const state = createTestDevice({ accountId: "alice", deviceId: 3 }, keys).crypto.state;
    const b = account("bob", bob);
    verifyDevices(state, b.claim(b.list(T0 + 10)), { now: T0 + 10 });
    const err = (() => {
      try {
        verifyDevices(state, b.claim(b.list(T0)), { now: T0 + 20 });
      } catch (e) {
        return e;
      }
    })();
    expect(CoreError.is(err, "StaleDeviceList")).toBe(true);
    const expired = verifyDevices(state, b.claim(b.list(T0 + 10)), { now: T0 + 40 * DAY });
    expect(expired.trusted.map((d) => d.deviceId)).toEqual([1]);
    expect(expired.rejected.every((x) => x.reason === "list-expired")).toBe(true);
  });

  it("reports a device dropped from the newest list as removed", () => {
    const state = createTestDevice({ accountId: "alice", deviceId: 4 }, keys).crypto.state;
    const b = account("bob", bob);
    verifyDevices(state, b.claim(b.list(T0)), { now: T0 });
    const r = verifyDevices(state, b.claim(b.list(T0 + 1, [0, 1])), { now: T0 + 1 });
    expect(r.trusted.map((d) => d.deviceId)).toEqual([1, 2]);
    expect(r.removed).toEqual([{ accountId: "bob", deviceId: 3 }]);
  });

  it("surfaces a changed account key as an event, trusts nothing until the user accepts it", () => {
    const state = createTestDevice({ accountId: "alice", deviceId: 5 }, keys).crypto.state;
    const before = account("bob", bob);
    verifyDevices(state, before.claim(before.list(T0)), { now: T0 });
    const after = account("bob", bob);
    const r = verifyDevices(state, after.claim(after.list(T0 + 5)), { now: T0 + 5 });
    expect(r.event?.type).toBe("account-key-changed");
    expect(r.trusted).toEqual([]);
    expect(state.getContactKey("bob")?.accountPublic).toEqual(
      before.accountKey.publicKey.serialize(),
    );
    acceptAccountKeyChange(state, "bob", T0 + 6);
    const accepted = verifyDevices(state, after.claim(after.list(T0 + 7)), { now: T0 + 7 });
    expect(accepted.event).toBeUndefined();
    expect(accepted.trusted.map((d) => d.deviceId)).toEqual([1, 2, 3]);
  });
});
