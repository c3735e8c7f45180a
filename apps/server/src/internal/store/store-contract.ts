import { randomBytes, randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ServerError, type ServerErrorCode } from "../errors.ts";
import type { NewDevice, QueueInsert, ServerStore, SignedPreKeyRecord } from "./server-store.ts";

export const T0 = 1_700_000_000_000;
const MINUTE = 60_000;

export const bytes = (n: number) => new Uint8Array(randomBytes(n));
const signed = (id: number, size = 32): SignedPreKeyRecord => ({
  id,
  publicKey: bytes(size),
  signature: bytes(64),
});

/** A device with 3 one-time prekeys (ids 1..3) and 2 one-time Kyber prekeys (ids 1..2). */
export function newDevice(deviceId: number, keyIndex: number): NewDevice {
  return {
    deviceId,
    keyIndex,
    registrationId: 1000 + deviceId,
    identityKey: bytes(33),
    signedDeviceIdentity: bytes(120),
    noiseKey: bytes(32),
    name: `device ${deviceId}`,
    platform: "test",
    keys: {
      signedPreKey: signed(7),
      lastResortKyberPreKey: signed(99, 1568),
      preKeys: [1, 2, 3].map((id) => ({ id, publicKey: bytes(33) })),
      kyberPreKeys: [1, 2].map((id) => signed(id, 1568)),
    },
  };
}

export async function codeOf(p: Promise<unknown>): Promise<ServerErrorCode | "resolved" | "other"> {
  try {
    await p;
    return "resolved";
  } catch (err) {
    return ServerError.is(err) ? err.code : "other";
  }
}

/**
 * Registers the behaviour every {@link ServerStore} must have as Vitest suites. `open` returns
 * a usable store for each test (a fresh one where possible); ids are random, and global
 * figures (queue depth, expiry counts, stale companions) are checked as deltas or filtered, so
 * the suite also runs against a shared database. Each test closes its store.
 */
export function describeServerStoreContract(name: string, open: () => Promise<ServerStore>): void {
  describe(`ServerStore contract: ${name}`, () => {
    let store: ServerStore;
    beforeEach(async () => {
      store = await open();
    });
    afterEach(async () => {
      await store.close();
    });

    /** Creates an account with its primary; returns the id and the primary's input. */
    async function account(opts: { now?: number; keyIndex?: number } = {}) {
      const accountId = `acct-${randomUUID()}`;
      const primary = newDevice(1, opts.keyIndex ?? 0);
      await store.createAccount({
        accountId,
        accountKey: bytes(33),
        signedDeviceList: bytes(80),
        deviceListTimestamp: 1,
        primary,
        now: opts.now ?? T0,
      });
      return { accountId, primary };
    }

    /** Reserves and adds a companion. */
    async function companion(accountId: string, now = T0) {
      const slot = await store.reserveCompanion({
        accountId,
        maxCompanions: 4,
        now,
        ttlMs: MINUTE,
      });
      const device = newDevice(slot.deviceId, slot.keyIndex);
      await store.addCompanion({ accountId, device, now });
      return device;
    }

    const copy = (accountId: string, deviceId: number, envelope = bytes(50)): QueueInsert => ({
      accountId,
      deviceId,
      envelope,
    });
    const opts = (extra: { dedupKey?: string; now?: number; expiresAt?: number } = {}) => ({
      now: T0,
      expiresAt: T0 + 30 * 24 * 60 * MINUTE,
      ...extra,
    });

    describe("accounts and devices", () => {
      it("creates an account with its primary and reads it back", async () => {
        const { accountId, primary } = await account();
        const acct = await store.getAccount(accountId);
        expect(acct).toMatchObject({ accountId, deviceListTimestamp: 1, createdAt: T0 });
        expect(acct?.accountKey).toHaveLength(33);
        const expected = {
          accountId,
          deviceId: 1,
          keyIndex: 0,
          registrationId: primary.registrationId,
          identityKey: primary.identityKey,
          signedDeviceIdentity: primary.signedDeviceIdentity,
          noiseKey: primary.noiseKey,
          name: primary.name,
          platform: primary.platform,
          linkedAt: T0,
          lastSeen: T0,
        };
        expect(await store.getDevice(accountId, 1)).toEqual(expected);
        expect(await store.getDeviceByNoiseKey(primary.noiseKey)).toEqual(expected);
        expect(await store.listDevices(accountId)).toEqual([expected]);
        expect(await store.getAccount("nobody")).toBeUndefined();
        expect(await store.getDevice(accountId, 2)).toBeUndefined();
        expect(await store.getDeviceByNoiseKey(bytes(32))).toBeUndefined();
        expect(await store.listDevices("nobody")).toEqual([]);
      });

      it("refuses a second account with the same id or noise key and changes nothing", async () => {
        const { accountId, primary } = await account();
        const before = await store.getAccount(accountId);
        const again = { accountKey: bytes(33), signedDeviceList: bytes(8), deviceListTimestamp: 9 };
        const dupId = { accountId, ...again, primary: newDevice(1, 0), now: T0 + 1 };
        expect(await codeOf(store.createAccount(dupId))).toBe("Conflict");
        expect(await store.getAccount(accountId)).toEqual(before);
        const other = `acct-${randomUUID()}`;
        const dupKey = { ...newDevice(1, 0), noiseKey: primary.noiseKey };
        const create = store.createAccount({
          accountId: other,
          ...again,
          primary: dupKey,
          now: T0,
        });
        expect(await codeOf(create)).toBe("Conflict");
        expect(await store.getAccount(other)).toBeUndefined();
      });

      it("refuses a primary that is not device 1", async () => {
        const accountId = `acct-${randomUUID()}`;
        const create = store.createAccount({
          accountId,
          accountKey: bytes(33),
          signedDeviceList: bytes(8),
          deviceListTimestamp: 1,
          primary: newDevice(2, 0),
          now: T0,
        });
        expect(await codeOf(create)).toBe("InvalidRequest");
        expect(await store.getAccount(accountId)).toBeUndefined();
      });

      it("replaces the device list only with a newer timestamp", async () => {
        const { accountId } = await account();
        const list = bytes(90);
        await store.updateDeviceList({ accountId, signedDeviceList: list, timestamp: 5 });
        expect(await store.getAccount(accountId)).toMatchObject({
          signedDeviceList: list,
          deviceListTimestamp: 5,
        });
        for (const timestamp of [5, 4]) {
          const stale = { accountId, signedDeviceList: bytes(90), timestamp };
          expect(await codeOf(store.updateDeviceList(stale))).toBe("StaleDeviceList");
        }
        expect((await store.getAccount(accountId))?.signedDeviceList).toEqual(list);
        const missing = { accountId: "nobody", signedDeviceList: list, timestamp: 9 };
        expect(await codeOf(store.updateDeviceList(missing))).toBe("NotFound");
      });

      it("records activity without going back in time", async () => {
        const { accountId } = await account();
        await store.touchDevice(accountId, 1, T0 + 500);
        await store.touchDevice(accountId, 1, T0 + 100);
        await store.touchDevice(accountId, 9, T0 + 100);
        expect((await store.getDevice(accountId, 1))?.lastSeen).toBe(T0 + 500);
      });

      it("lists companions of accounts whose primary was not seen since a time", async () => {
        const stale = await account();
        const c2 = await companion(stale.accountId);
        const c3 = await companion(stale.accountId);
        const fresh = await account();
        await companion(fresh.accountId);
        await store.touchDevice(fresh.accountId, 1, T0 + 10 * MINUTE);
        // A companion's own activity does not keep it linked: only the primary's counts.
        await store.touchDevice(stale.accountId, c2.deviceId, T0 + 10 * MINUTE);
        const mine = new Set([stale.accountId, fresh.accountId]);
        const listed = (await store.listStaleCompanions(T0 + 5 * MINUTE)).filter((c) =>
          mine.has(c.accountId),
        );
        expect(listed).toEqual([
          { accountId: stale.accountId, deviceId: c2.deviceId },
          { accountId: stale.accountId, deviceId: c3.deviceId },
        ]);
        const none = await store.listStaleCompanions(T0);
        expect(none.filter((c) => mine.has(c.accountId))).toEqual([]);
      });
    });

    describe("companions", () => {
      it("reserves increasing device ids and key indexes that expire", async () => {
        const { accountId } = await account({ keyIndex: 3 });
        const reserve = (now: number) =>
          store.reserveCompanion({ accountId, maxCompanions: 4, now, ttlMs: MINUTE });
        expect(await reserve(T0)).toEqual({ deviceId: 2, keyIndex: 4 });
        expect(await reserve(T0)).toEqual({ deviceId: 3, keyIndex: 5 });
        expect(await store.getReservation(accountId, 2, T0 + MINUTE - 1)).toEqual({ keyIndex: 4 });
        expect(await store.getReservation(accountId, 2, T0 + MINUTE)).toBeUndefined();
        expect(await store.getReservation(accountId, 4, T0)).toBeUndefined();
        const unknown = store.reserveCompanion({
          accountId: "nobody",
          maxCompanions: 4,
          now: T0,
          ttlMs: 1,
        });
        expect(await codeOf(unknown)).toBe("NotFound");
      });

      it("counts linked companions and live reservations against the limit", async () => {
        const { accountId } = await account();
        const reserve = (now: number, maxCompanions = 2) =>
          store.reserveCompanion({ accountId, maxCompanions, now, ttlMs: MINUTE });
        await reserve(T0);
        await reserve(T0);
        expect(await codeOf(reserve(T0 + 1))).toBe("TooManyDevices");
        // Once they expire the slots are free again, but ids 2 and 3 stay burnt.
        expect(await reserve(T0 + MINUTE)).toEqual({ deviceId: 4, keyIndex: 3 });
        const device = newDevice(4, 3);
        await store.addCompanion({ accountId, device, now: T0 + MINUTE });
        expect(await reserve(T0 + MINUTE)).toMatchObject({ deviceId: 5 });
        expect(await codeOf(reserve(T0 + MINUTE))).toBe("TooManyDevices");
        expect(await codeOf(reserve(T0 + 3 * MINUTE, 1))).toBe("TooManyDevices");
      });

      it("never hands out a device id twice, even after removal", async () => {
        const { accountId } = await account();
        const c = await companion(accountId);
        expect(c.deviceId).toBe(2);
        await store.removeDevice({
          accountId,
          deviceId: 2,
          signedDeviceList: bytes(8),
          timestamp: 2,
        });
        const next = await store.reserveCompanion({
          accountId,
          maxCompanions: 4,
          now: T0,
          ttlMs: 1,
        });
        expect(next).toEqual({ deviceId: 3, keyIndex: 2 });
      });

      it("stops at device id 127", async () => {
        const { accountId } = await account();
        const reserve = () =>
          store.reserveCompanion({ accountId, maxCompanions: 1000, now: T0, ttlMs: MINUTE });
        let last = 0;
        for (let i = 2; i <= 127; i++) last = (await reserve()).deviceId;
        expect(last).toBe(127);
        expect(await codeOf(reserve())).toBe("TooManyDevices");
      });

      it("adds a companion only for a live reservation with its key index, consuming it", async () => {
        const { accountId, primary } = await account();
        const add = (device: NewDevice, now = T0) => store.addCompanion({ accountId, device, now });
        expect(await codeOf(add(newDevice(2, 1)))).toBe("NotFound");
        const slot = await store.reserveCompanion({
          accountId,
          maxCompanions: 4,
          now: T0,
          ttlMs: MINUTE,
        });
        expect(slot).toEqual({ deviceId: 2, keyIndex: 1 });
        expect(await codeOf(add(newDevice(2, 1), T0 + MINUTE))).toBe("NotFound");
        expect(await codeOf(add(newDevice(2, 7)))).toBe("NotFound");
        const clash = { ...newDevice(2, 1), noiseKey: primary.noiseKey };
        expect(await codeOf(add(clash))).toBe("Conflict");
        expect(await store.getReservation(accountId, 2, T0)).toEqual({ keyIndex: 1 });
        const device = newDevice(2, 1);
        await add(device, T0 + 5);
        expect(await store.getDevice(accountId, 2)).toMatchObject({
          keyIndex: 1,
          noiseKey: device.noiseKey,
          linkedAt: T0 + 5,
        });
        expect(await store.getReservation(accountId, 2, T0)).toBeUndefined();
        expect(await codeOf(add(newDevice(2, 1)))).toBe("NotFound");
        expect((await store.listDevices(accountId)).map((d) => d.deviceId)).toEqual([1, 2]);
      });

      it("removes a device with its keys and queue and stores the new list", async () => {
        const { accountId } = await account();
        const c = await companion(accountId);
        const depth0 = await store.queueDepth();
        await store.enqueue([copy(accountId, 1), copy(accountId, 2), copy(accountId, 2)], opts());
        const list = bytes(40);
        await store.removeDevice({
          accountId,
          deviceId: c.deviceId,
          signedDeviceList: list,
          timestamp: 2,
        });
        expect(await store.getDevice(accountId, 2)).toBeUndefined();
        expect(await store.getDeviceByNoiseKey(c.noiseKey)).toBeUndefined();
        expect(await store.takePreKeyBundle(accountId, 2)).toBeUndefined();
        expect(await codeOf(store.countPreKeys(accountId, 2))).toBe("NotFound");
        expect(await store.fetchQueue(accountId, 2, 0, 10)).toEqual([]);
        expect(await store.fetchQueue(accountId, 1, 0, 10)).toHaveLength(1);
        expect(await store.queueDepth()).toBe(depth0 + 1);
        expect(await store.getAccount(accountId)).toMatchObject({
          signedDeviceList: list,
          deviceListTimestamp: 2,
        });
      });

      it("refuses a removal with an older list, an unknown device or the primary, changing nothing", async () => {
        const { accountId } = await account();
        await companion(accountId);
        const list = bytes(40);
        await store.updateDeviceList({ accountId, signedDeviceList: list, timestamp: 5 });
        const remove = (deviceId: number, timestamp: number, accountName = accountId) =>
          store.removeDevice({
            accountId: accountName,
            deviceId,
            signedDeviceList: bytes(40),
            timestamp,
          });
        expect(await codeOf(remove(2, 4))).toBe("StaleDeviceList");
        expect(await codeOf(remove(9, 6))).toBe("NotFound");
        expect(await codeOf(remove(1, 6))).toBe("InvalidRequest");
        expect(await codeOf(remove(2, 6, "nobody"))).toBe("NotFound");
        expect(await store.getDevice(accountId, 2)).toBeDefined();
        expect(await store.getAccount(accountId)).toMatchObject({
          signedDeviceList: list,
          deviceListTimestamp: 5,
        });
      });

      it("removes a device under an equal timestamp keeping the stored list (server logout)", async () => {
        const { accountId } = await account();
        await companion(accountId);
        const before = await store.getAccount(accountId);
        await store.removeDevice({
          accountId,
          deviceId: 2,
          signedDeviceList: bytes(40),
          timestamp: 1,
        });
        expect(await store.getDevice(accountId, 2)).toBeUndefined();
        expect(await store.getAccount(accountId)).toEqual(before);
      });

      it("removes a companion only while its primary is unseen since primarySeenBefore", async () => {
        const { accountId } = await account();
        const c = await companion(accountId);
        // The companion's own activity does not count, only the primary's.
        await store.touchDevice(accountId, c.deviceId, T0 + 20 * MINUTE);
        await store.touchDevice(accountId, 1, T0 + 10 * MINUTE);
        const before = await store.getAccount(accountId);
        const remove = (primarySeenBefore: number) =>
          store.removeDevice({
            accountId,
            deviceId: c.deviceId,
            signedDeviceList: bytes(40),
            timestamp: 1,
            primarySeenBefore,
          });
        // Seen at the cutoff itself counts as seen.
        for (const cutoff of [T0, T0 + 10 * MINUTE]) {
          expect(await codeOf(remove(cutoff))).toBe("Conflict");
        }
        expect(await store.getDevice(accountId, c.deviceId)).toBeDefined();
        expect(await store.getDeviceByNoiseKey(c.noiseKey)).toBeDefined();
        await remove(T0 + 10 * MINUTE + 1);
        expect(await store.getDevice(accountId, c.deviceId)).toBeUndefined();
        expect(await store.getAccount(accountId)).toEqual(before);
        expect(await codeOf(remove(T0 + 10 * MINUTE + 1))).toBe("NotFound");
      });
    });

    describe("prekeys", () => {
      it("hands out each one-time key once, then Kyber's last resort", async () => {
        const { accountId, primary } = await account();
        expect(await store.countPreKeys(accountId, 1)).toEqual({
          preKeys: 3,
          kyberPreKeys: 2,
          signedPreKeyUploadedAt: T0,
        });
        const bundles = [];
        for (let i = 0; i < 4; i++) bundles.push(await store.takePreKeyBundle(accountId, 1));
        expect(bundles[0]).toEqual({
          deviceId: 1,
          registrationId: primary.registrationId,
          identityKey: primary.identityKey,
          signedPreKey: primary.keys.signedPreKey,
          preKey: primary.keys.preKeys[0],
          kyberPreKey: primary.keys.kyberPreKeys[0],
        });
        expect(bundles.map((b) => b?.preKey?.id)).toEqual([1, 2, 3, undefined]);
        expect(bundles[3] && "preKey" in bundles[3]).toBe(false);
        expect(bundles.map((b) => b?.kyberPreKey.id)).toEqual([1, 2, 99, 99]);
        expect(bundles[3]?.kyberPreKey).toEqual(primary.keys.lastResortKyberPreKey);
        expect(await store.countPreKeys(accountId, 1)).toMatchObject({
          preKeys: 0,
          kyberPreKeys: 0,
        });
        expect(await store.takePreKeyBundle(accountId, 5)).toBeUndefined();
      });

      it("never hands the same key to concurrent takers", async () => {
        const { accountId } = await account();
        const ids = Array.from({ length: 30 }, (_, i) => i + 10);
        await store.putPreKeys(
          accountId,
          1,
          { preKeys: ids.map((id) => ({ id, publicKey: bytes(33) })), kyberPreKeys: [] },
          T0,
        );
        const taken = await Promise.all(ids.map(() => store.takePreKeyBundle(accountId, 1)));
        const got = taken.map((b) => b?.preKey?.id).filter((id) => id !== undefined);
        expect(new Set(got).size).toBe(got.length);
        expect(got.length).toBe(30);
      });

      it("adds one-time keys and replaces the signed and last-resort keys", async () => {
        const { accountId } = await account();
        const spk = signed(8);
        const lastResort = signed(100, 1568);
        await store.putPreKeys(
          accountId,
          1,
          {
            signedPreKey: spk,
            lastResortKyberPreKey: lastResort,
            preKeys: [{ id: 4, publicKey: bytes(33) }],
            kyberPreKeys: [signed(3, 1568)],
          },
          T0 + 9,
        );
        expect(await store.countPreKeys(accountId, 1)).toEqual({
          preKeys: 4,
          kyberPreKeys: 3,
          signedPreKeyUploadedAt: T0 + 9,
        });
        for (let i = 0; i < 3; i++) await store.takePreKeyBundle(accountId, 1);
        const b = await store.takePreKeyBundle(accountId, 1);
        expect(b?.signedPreKey).toEqual(spk);
        expect(b?.preKey?.id).toBe(4);
        expect((await store.takePreKeyBundle(accountId, 1))?.kyberPreKey).toEqual(lastResort);
        const empty = { preKeys: [], kyberPreKeys: [] };
        expect(await codeOf(store.putPreKeys(accountId, 3, empty, T0))).toBe("NotFound");
        expect(await codeOf(store.countPreKeys("nobody", 1))).toBe("NotFound");
      });
    });

    describe("queues", () => {
      it("enqueues copies in order and fetches them oldest first, in pages", async () => {
        const { accountId } = await account();
        await companion(accountId);
        const envelopes = Array.from({ length: 5 }, () => bytes(60));
        const seqs: number[] = [];
        for (const e of envelopes) {
          const r = await store.enqueue([copy(accountId, 1, e), copy(accountId, 2)], opts());
          expect(r.duplicate).toBe(false);
          expect(r.seqs).toHaveLength(2);
          seqs.push(r.seqs[0] ?? -1);
        }
        expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
        expect(new Set(seqs).size).toBe(5);
        const page1 = await store.fetchQueue(accountId, 1, 0, 3);
        expect(page1).toEqual(
          envelopes.slice(0, 3).map((envelope, i) => ({ seq: seqs[i], envelope, enqueuedAt: T0 })),
        );
        const page2 = await store.fetchQueue(accountId, 1, page1[2]?.seq ?? 0, 3);
        expect(page2.map((m) => m.seq)).toEqual(seqs.slice(3));
        expect(await store.fetchQueue(accountId, 1, seqs[4] ?? 0, 3)).toEqual([]);
        expect(await store.fetchQueue(accountId, 1, 0, 0)).toEqual([]);
        expect(await store.fetchQueue(accountId, 7, 0, 10)).toEqual([]);
      });

      it("stores nothing when one copy names an unknown device", async () => {
        const { accountId } = await account();
        const depth0 = await store.queueDepth();
        const inserts = [copy(accountId, 1), copy(accountId, 1), copy(accountId, 6)];
        const key = `k-${randomUUID()}`;
        expect(await codeOf(store.enqueue(inserts, opts({ dedupKey: key })))).toBe("NotFound");
        expect(await store.queueDepth()).toBe(depth0);
        expect(await store.fetchQueue(accountId, 1, 0, 10)).toEqual([]);
        // The failed call did not spend the dedup key.
        const r = await store.enqueue(inserts.slice(0, 2), opts({ dedupKey: key }));
        expect(r.duplicate).toBe(false);
        expect(await store.queueDepth()).toBe(depth0 + 2);
      });

      it("stores a message once per dedup key until the key expires", async () => {
        const { accountId } = await account();
        const key = `k-${randomUUID()}`;
        const first = await store.enqueue(
          [copy(accountId, 1)],
          opts({ dedupKey: key, expiresAt: T0 + MINUTE }),
        );
        expect(first).toMatchObject({ duplicate: false });
        const second = await store.enqueue(
          [copy(accountId, 1)],
          opts({ dedupKey: key, expiresAt: T0 + MINUTE }),
        );
        expect(second).toEqual({ seqs: [], duplicate: true });
        expect(await store.fetchQueue(accountId, 1, 0, 10)).toHaveLength(1);
        const other = await store.enqueue([copy(accountId, 1)], opts({ dedupKey: `${key}x` }));
        expect(other.duplicate).toBe(false);
        const later = opts({ dedupKey: key, now: T0 + MINUTE, expiresAt: T0 + 2 * MINUTE });
        expect((await store.enqueue([copy(accountId, 1)], later)).duplicate).toBe(false);
      });

      it("lets a device acknowledge only its own messages", async () => {
        const { accountId } = await account();
        await companion(accountId);
        const mine = await store.enqueue([copy(accountId, 1), copy(accountId, 1)], opts());
        const theirs = await store.enqueue([copy(accountId, 2)], opts());
        expect(await store.ack(accountId, 2, mine.seqs)).toBe(0);
        expect(await store.ack("nobody", 1, mine.seqs)).toBe(0);
        expect(await store.fetchQueue(accountId, 1, 0, 10)).toHaveLength(2);
        expect(await store.ack(accountId, 1, [...mine.seqs, ...theirs.seqs, 999_999_999])).toBe(2);
        expect(await store.ack(accountId, 1, mine.seqs)).toBe(0);
        expect(await store.fetchQueue(accountId, 1, 0, 10)).toEqual([]);
        expect(await store.fetchQueue(accountId, 2, 0, 10)).toHaveLength(1);
        expect(await store.ack(accountId, 1, [])).toBe(0);
      });

      it("acknowledges a large batch of seqs: only the device's own, each once", async () => {
        const { accountId } = await account();
        await companion(accountId);
        const mine = await store.enqueue(
          Array.from({ length: 12 }, () => copy(accountId, 1)),
          opts(),
        );
        const theirs = await store.enqueue([copy(accountId, 2), copy(accountId, 2)], opts());
        expect(await store.ack(accountId, 2, mine.seqs)).toBe(0);
        const some = mine.seqs.slice(0, 8);
        expect(await store.ack(accountId, 1, [...some, ...some, ...theirs.seqs, 999_999_999])).toBe(
          8,
        );
        expect((await store.fetchQueue(accountId, 1, 0, 20)).map((m) => m.seq)).toEqual(
          mine.seqs.slice(8),
        );
        expect(await store.fetchQueue(accountId, 2, 0, 20)).toHaveLength(2);
      });

      it("expires messages past their expiry and keeps the rest", async () => {
        const { accountId } = await account();
        await store.enqueue([copy(accountId, 1), copy(accountId, 1)], opts({ expiresAt: T0 + 10 }));
        const keep = await store.enqueue([copy(accountId, 1)], opts({ expiresAt: T0 + 20 }));
        const depth0 = await store.queueDepth();
        expect(await store.expire(T0 + 10)).toBeGreaterThanOrEqual(2);
        expect(await store.queueDepth()).toBe(depth0 - 2);
        expect((await store.fetchQueue(accountId, 1, 0, 10)).map((m) => m.seq)).toEqual(keep.seqs);
      });

      it("does not hand out a message past its expiry before expire() deletes it", async () => {
        const { accountId } = await account();
        const old = await store.enqueue([copy(accountId, 1)], opts({ expiresAt: T0 + 10 }));
        const keep = await store.enqueue([copy(accountId, 1)], opts({ expiresAt: T0 + 20 }));
        const seqs = async (now?: number) =>
          (await store.fetchQueue(accountId, 1, 0, 10, now)).map((m) => m.seq);
        expect(await seqs(T0 + 9)).toEqual([...old.seqs, ...keep.seqs]);
        expect(await seqs(T0 + 10)).toEqual(keep.seqs);
        expect(await seqs(T0 + 20)).toEqual([]);
        // Still stored (only expire deletes), and still there without a time.
        expect(await seqs()).toEqual([...old.seqs, ...keep.seqs]);
      });

      it("keeps seqs increasing per device across interleaved sends", async () => {
        const a = await account();
        const b = await account();
        const seen: number[] = [];
        for (let i = 0; i < 10; i++) {
          const r = await store.enqueue([copy(b.accountId, 1), copy(a.accountId, 1)], opts());
          seen.push(r.seqs[1] ?? -1);
        }
        const fetched = (await store.fetchQueue(a.accountId, 1, 0, 100)).map((m) => m.seq);
        expect(fetched).toEqual(seen);
        expect(seen.every((s, i) => i === 0 || s > (seen[i - 1] ?? Infinity))).toBe(true);
      });
    });

    describe("groups, blobs, invites", () => {
      it("creates groups and updates membership with a new revision", async () => {
        const groupId = `g-${randomUUID()}`;
        const group = {
          groupId,
          name: "team",
          members: ["a", "b", "a"],
          revision: 1,
          createdBy: "a",
        };
        await store.createGroup(group);
        expect(await store.getGroup(groupId)).toEqual({ ...group, members: ["a", "b"] });
        expect(await codeOf(store.createGroup(group))).toBe("Conflict");
        const updated = await store.updateGroup(groupId, { add: ["c", "b"], remove: ["a", "zz"] });
        expect(updated).toEqual({ ...group, members: ["b", "c"], revision: 2, notified: [] });
        expect(await store.getGroup(groupId)).toEqual({
          ...group,
          members: ["b", "c"],
          revision: 2,
        });
        expect((await store.updateGroup(groupId, { add: [], remove: [] })).revision).toBe(3);
        expect(await codeOf(store.updateGroup("nope", { add: ["a"], remove: [] }))).toBe(
          "NotFound",
        );
        expect(await store.getGroup("nope")).toBeUndefined();
      });

      it("queues a membership notice for every device of every affected member, with the change", async () => {
        const alice = await account();
        await companion(alice.accountId);
        const bob = await account();
        await companion(bob.accountId);
        const carol = await account();
        const groupId = `g-${randomUUID()}`;
        const seen: Array<{
          revision: number;
          members: string[];
          added: string[];
          removed: string[];
        }> = [];
        // The envelope is opaque to the store: here it just names the change it was built for.
        const notice = (skip?: { accountId: string; deviceId: number }) => ({
          ...opts(),
          ...(skip ? { skip } : {}),
          envelope: (
            g: { revision: number; members: string[] },
            change: { added: string[]; removed: string[] },
          ) => {
            seen.push({ revision: g.revision, members: g.members, ...change });
            return new TextEncoder().encode(`rev ${String(g.revision)}`);
          },
        });
        const text = (m: { envelope: Uint8Array }) => new TextDecoder().decode(m.envelope);
        const sorted = (refs: Array<{ accountId: string; deviceId: number }>) =>
          refs.map((r) => `${r.accountId}|${String(r.deviceId)}`).sort();

        // Created by Alice's primary (skipped: its answer says it all) with Bob and a remote
        // member (no devices here: skipped).
        const created = await store.createGroup(
          {
            groupId,
            name: "team",
            members: [alice.accountId, bob.accountId, "dave@other.example"],
            revision: 1,
            createdBy: alice.accountId,
          },
          notice({ accountId: alice.accountId, deviceId: 1 }),
        );
        expect(sorted(created.notified)).toEqual(
          sorted([
            { accountId: alice.accountId, deviceId: 2 },
            { accountId: bob.accountId, deviceId: 1 },
            { accountId: bob.accountId, deviceId: 2 },
          ]),
        );
        expect(seen.at(-1)).toEqual({
          revision: 1,
          members: [alice.accountId, bob.accountId, "dave@other.example"],
          added: [alice.accountId, bob.accountId, "dave@other.example"],
          removed: [],
        });
        for (const [a, d] of [
          [alice.accountId, 2],
          [bob.accountId, 1],
          [bob.accountId, 2],
        ] as const)
          expect((await store.fetchQueue(a, d, 0, 10)).map(text)).toEqual(["rev 1"]);
        expect(await store.fetchQueue(alice.accountId, 1, 0, 10)).toEqual([]);

        // Bob removed, Carol added: the removed, the added and the remaining are all told.
        const updated = await store.updateGroup(
          groupId,
          { add: [carol.accountId], remove: [bob.accountId] },
          notice(),
        );
        expect(updated.revision).toBe(2);
        expect(seen.at(-1)).toEqual({
          revision: 2,
          members: [alice.accountId, "dave@other.example", carol.accountId],
          added: [carol.accountId],
          removed: [bob.accountId],
        });
        expect(sorted(updated.notified)).toEqual(
          sorted([
            { accountId: alice.accountId, deviceId: 1 },
            { accountId: alice.accountId, deviceId: 2 },
            { accountId: bob.accountId, deviceId: 1 },
            { accountId: bob.accountId, deviceId: 2 },
            { accountId: carol.accountId, deviceId: 1 },
          ]),
        );
        expect((await store.fetchQueue(bob.accountId, 2, 0, 10)).map(text)).toEqual([
          "rev 1",
          "rev 2",
        ]);
        expect((await store.fetchQueue(carol.accountId, 1, 0, 10)).map(text)).toEqual(["rev 2"]);

        // A failed change queues nothing.
        const depth = await store.queueDepth();
        expect(
          await codeOf(store.updateGroup("nope-nope", { add: [], remove: [] }, notice())),
        ).toBe("NotFound");
        expect(await store.queueDepth()).toBe(depth);
      });

      it("keeps blob metadata once per id", async () => {
        const blobId = `b-${randomUUID()}`;
        const sha256 = bytes(32);
        await store.putBlob({ blobId, size: 1234, sha256, owner: "acct", now: T0 });
        expect(await store.getBlob(blobId)).toEqual({ blobId, size: 1234, sha256 });
        const again = store.putBlob({ blobId, size: 1, sha256, owner: "acct", now: T0 });
        expect(await codeOf(again)).toBe("Conflict");
        expect(await store.getBlob("missing")).toBeUndefined();
      });

      it("accepts an invite token once", async () => {
        const token = `t-${randomUUID()}`;
        await store.addInvite(token, T0);
        expect(await codeOf(store.addInvite(token, T0))).toBe("Conflict");
        const uses = await Promise.all([store.useInvite(token, T0), store.useInvite(token, T0)]);
        expect(uses.sort()).toEqual([false, true]);
        expect(await store.useInvite(token, T0 + 1)).toBe(false);
        expect(await store.useInvite(`${token}x`, T0)).toBe(false);
      });
    });

    describe("backup key vault", () => {
      const wrappedKey = new Uint8Array(60).fill(3);
      let logins = 0;
      const guess = (vaultId: string, maxGuesses: number, now = 1, ttl = 100) => ({
        vaultId,
        maxGuesses,
        now,
        login: {
          loginId: `l-${randomUUID()}-${String(++logins)}`,
          state: "s",
          expiresAt: now + ttl,
        },
      });

      it("counts guesses, resets on success and destroys the record at the limit", async () => {
        const v = `v-${randomUUID()}`;
        await store.createVaultRecord({
          vaultId: v,
          registrationRecord: "rec",
          wrappedKey,
          now: 1,
        });
        expect(
          await codeOf(
            store.createVaultRecord({ vaultId: v, registrationRecord: "x", wrappedKey, now: 1 }),
          ),
        ).toBe("Conflict");
        expect(await store.getVaultRecord(v)).toEqual({ registrationRecord: "rec", guesses: 0 });
        expect(await store.countVaultGuess(guess(v, 3))).toEqual({ guesses: 1 });
        expect(await store.countVaultGuess(guess(v, 3))).toEqual({ guesses: 2 });
        const released = await store.vaultLoginSucceeded(v);
        expect(Buffer.from(released?.wrappedKey ?? []).equals(wrappedKey)).toBe(true);
        for (let i = 1; i <= 3; i++) {
          expect(await store.countVaultGuess(guess(v, 3))).toEqual({ guesses: i });
        }
        // Out of guesses, but started logins are still live: locked, not yet destroyed.
        expect(await store.countVaultGuess(guess(v, 3, 50))).toBe("locked");
        expect(await store.vaultLoginFailed(v, 3, 50)).toBe(false);
        // Once they expired, the record goes.
        expect(await store.vaultLoginFailed(v, 3, 500)).toBe(true);
        expect(await store.countVaultGuess(guess(v, 3, 500))).toBeUndefined();
        expect(await store.vaultLoginSucceeded(v)).toBeUndefined();
      });

      it("hands a started login out once, and not after it expires", async () => {
        const v = `v-${randomUUID()}`;
        await store.createVaultRecord({ vaultId: v, registrationRecord: "r", wrappedKey, now: 1 });
        const a = guess(v, 10, 1, 99);
        const b = guess(v, 10, 1, 99);
        await store.countVaultGuess(a);
        await store.countVaultGuess(b);
        expect(await store.takeVaultLogin(a.login.loginId, 50)).toEqual({ vaultId: v, state: "s" });
        expect(await store.takeVaultLogin(a.login.loginId, 50)).toBeUndefined();
        expect(await store.takeVaultLogin(b.login.loginId, 100)).toBeUndefined();
        expect(await store.deleteVaultRecord(v)).toBe(true);
        expect(await store.deleteVaultRecord(v)).toBe(false);
      });

      it("never hands out more than the limit to concurrent guesses", async () => {
        const v = `v-${randomUUID()}`;
        await store.createVaultRecord({ vaultId: v, registrationRecord: "r", wrappedKey, now: 1 });
        const results = await Promise.all(
          Array.from({ length: 30 }, () => store.countVaultGuess(guess(v, 10))),
        );
        const granted = results.filter((r) => typeof r === "object");
        expect(granted.length).toBe(10);
        expect(new Set(granted.map((r) => r.guesses)).size).toBe(10);
        expect(results.filter((r) => r === "locked").length).toBe(20);
      });
    });

    describe("health", () => {
      it("answers ping until closed, then reports Unavailable", async () => {
        await store.ping();
        await store.close();
        expect(await codeOf(store.ping())).toBe("Unavailable");
        expect(await codeOf(store.getAccount("x"))).toBe("Unavailable");
        await store.close();
      });
    });
  });
}
