import { ServerError } from "../errors.ts";
import type { AccountRecord, DeviceRecord, NewDevice, ServerStore } from "./server-store.ts";
import { bytes, type SqliteContext } from "./sqlite-context.ts";
import type { KeyWriter } from "./sqlite-prekeys.ts";

type DirectoryMethods = Pick<
  ServerStore,
  | "createAccount"
  | "getAccount"
  | "deleteAccount"
  | "getDevice"
  | "getDeviceByNoiseKey"
  | "listDevices"
  | "reserveCompanion"
  | "getReservation"
  | "addCompanion"
  | "updateDeviceList"
  | "removeDevice"
  | "touchDevice"
  | "listStaleCompanions"
>;

/** libsignal rejects device ids above 127. */
const MAX_DEVICE_ID = 127;

interface AccountRow {
  account_id: string;
  account_key: Buffer;
  signed_device_list: Buffer;
  device_list_timestamp: number;
  created_at: number;
}

interface DeviceRow {
  account_id: string;
  device_id: number;
  key_index: number;
  registration_id: number;
  identity_key: Buffer;
  signed_device_identity: Buffer;
  noise_key: Buffer;
  name: string;
  platform: string;
  linked_at: number;
  last_seen: number;
}

const DEVICE_COLUMNS =
  "account_id, device_id, key_index, registration_id, identity_key, signed_device_identity, noise_key, name, platform, linked_at, last_seen";

const toAccount = (r: AccountRow): AccountRecord => ({
  accountId: r.account_id,
  accountKey: bytes(r.account_key),
  signedDeviceList: bytes(r.signed_device_list),
  deviceListTimestamp: r.device_list_timestamp,
  createdAt: r.created_at,
});

const toDevice = (r: DeviceRow): DeviceRecord => ({
  accountId: r.account_id,
  deviceId: r.device_id,
  keyIndex: r.key_index,
  registrationId: r.registration_id,
  identityKey: bytes(r.identity_key),
  signedDeviceIdentity: bytes(r.signed_device_identity),
  noiseKey: bytes(r.noise_key),
  name: r.name,
  platform: r.platform,
  linkedAt: r.linked_at,
  lastSeen: r.last_seen,
});

/** Accounts, devices, companion reservations and device lists of the SQLite store. */
export function createSqliteDirectory(
  ctx: SqliteContext,
  writeKeys: KeyWriter,
  groupWrite: <T>(apply: () => T) => Promise<T>,
): DirectoryMethods {
  const { db, run } = ctx;
  const q = {
    insertAccount: db.prepare<[string, Uint8Array, Uint8Array, number, number, number, number]>(
      `INSERT INTO accounts (account_id, account_key, signed_device_list, device_list_timestamp,
         created_at, next_device_id, next_key_index) VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    insertDevice: db.prepare<
      [
        string,
        number,
        number,
        number,
        Uint8Array,
        Uint8Array,
        Uint8Array,
        string,
        string,
        number,
        number,
      ]
    >(
      `INSERT INTO devices (account_id, device_id, key_index, registration_id, identity_key,
         signed_device_identity, noise_key, name, platform, linked_at, last_seen)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    deleteAccount: db.prepare<[string]>("DELETE FROM accounts WHERE account_id = ?"),
    account: db.prepare<[string], AccountRow>(
      `SELECT account_id, account_key, signed_device_list, device_list_timestamp, created_at
       FROM accounts WHERE account_id = ?`,
    ),
    counters: db.prepare<[string], { next_device_id: number; next_key_index: number }>(
      "SELECT next_device_id, next_key_index FROM accounts WHERE account_id = ?",
    ),
    bumpCounters: db.prepare<[string]>(
      `UPDATE accounts SET next_device_id = next_device_id + 1, next_key_index = next_key_index + 1
       WHERE account_id = ?`,
    ),
    device: db.prepare<[string, number], DeviceRow>(
      `SELECT ${DEVICE_COLUMNS} FROM devices WHERE account_id = ? AND device_id = ?`,
    ),
    deviceByNoiseKey: db.prepare<[Uint8Array], DeviceRow>(
      `SELECT ${DEVICE_COLUMNS} FROM devices WHERE noise_key = ?`,
    ),
    devices: db.prepare<[string], DeviceRow>(
      `SELECT ${DEVICE_COLUMNS} FROM devices WHERE account_id = ? ORDER BY device_id`,
    ),
    countCompanions: db.prepare<[string], { n: number }>(
      "SELECT count(*) AS n FROM devices WHERE account_id = ? AND device_id <> 1",
    ),
    dropExpiredReservations: db.prepare<[string, number]>(
      "DELETE FROM reservations WHERE account_id = ? AND expires_at <= ?",
    ),
    countReservations: db.prepare<[string, number], { n: number }>(
      "SELECT count(*) AS n FROM reservations WHERE account_id = ? AND expires_at > ?",
    ),
    insertReservation: db.prepare<[string, number, number, number]>(
      "INSERT INTO reservations (account_id, device_id, key_index, expires_at) VALUES (?, ?, ?, ?)",
    ),
    reservation: db.prepare<[string, number, number], { key_index: number }>(
      "SELECT key_index FROM reservations WHERE account_id = ? AND device_id = ? AND expires_at > ?",
    ),
    dropReservation: db.prepare<[string, number]>(
      "DELETE FROM reservations WHERE account_id = ? AND device_id = ?",
    ),
    setDeviceList: db.prepare<[Uint8Array, number, string, number]>(
      `UPDATE accounts SET signed_device_list = ?, device_list_timestamp = ?
       WHERE account_id = ? AND device_list_timestamp < ?`,
    ),
    deleteDeviceRows: ["queue", "prekeys", "kyber_prekeys", "signed_prekeys", "devices"].map((t) =>
      db.prepare<[number]>(`DELETE FROM ${t} WHERE dev = ?`),
    ),
    touch: db.prepare<[number, string, number, number]>(
      "UPDATE devices SET last_seen = ? WHERE account_id = ? AND device_id = ? AND last_seen < ?",
    ),
    stale: db.prepare<[number], { account_id: string; device_id: number }>(
      `SELECT c.account_id, c.device_id FROM devices AS p
       JOIN devices AS c ON c.account_id = p.account_id AND c.device_id <> 1
       WHERE p.device_id = 1 AND p.last_seen < ? ORDER BY c.account_id, c.device_id`,
    ),
  };

  const insertDevice = (accountId: string, d: NewDevice, now: number) => {
    const info = q.insertDevice.run(
      accountId,
      d.deviceId,
      d.keyIndex,
      d.registrationId,
      d.identityKey,
      d.signedDeviceIdentity,
      d.noiseKey,
      d.name,
      d.platform,
      now,
      now,
    );
    writeKeys(Number(info.lastInsertRowid), d.keys, now);
  };

  /** Stores a newer device list; throws NotFound or StaleDeviceList otherwise. */
  const casDeviceList = (accountId: string, list: Uint8Array, timestamp: number) => {
    if (q.setDeviceList.run(list, timestamp, accountId, timestamp).changes === 1) return;
    if (!q.counters.get(accountId)) throw new ServerError("NotFound", "account not found");
    throw new ServerError("StaleDeviceList", "device list is not newer than the stored one");
  };

  const createAccount = db.transaction((input: Parameters<ServerStore["createAccount"]>[0]) => {
    if (input.primary.deviceId !== 1) {
      throw new ServerError("InvalidRequest", "the primary must be device 1");
    }
    q.insertAccount.run(
      input.accountId,
      input.accountKey,
      input.signedDeviceList,
      input.deviceListTimestamp,
      input.now,
      2,
      input.primary.keyIndex + 1,
    );
    insertDevice(input.accountId, input.primary, input.now);
  });

  const reserve = db.transaction((input: Parameters<ServerStore["reserveCompanion"]>[0]) => {
    const counters = q.counters.get(input.accountId);
    if (!counters) throw new ServerError("NotFound", "account not found");
    q.dropExpiredReservations.run(input.accountId, input.now);
    const taken =
      (q.countCompanions.get(input.accountId)?.n ?? 0) +
      (q.countReservations.get(input.accountId, input.now)?.n ?? 0);
    if (taken >= input.maxCompanions || counters.next_device_id > MAX_DEVICE_ID) {
      throw new ServerError("TooManyDevices", "the account has no free companion slot");
    }
    const slot = { deviceId: counters.next_device_id, keyIndex: counters.next_key_index };
    q.insertReservation.run(input.accountId, slot.deviceId, slot.keyIndex, input.now + input.ttlMs);
    q.bumpCounters.run(input.accountId);
    return slot;
  });

  const addCompanion = db.transaction((input: Parameters<ServerStore["addCompanion"]>[0]) => {
    const { accountId, device, now } = input;
    const reserved = q.reservation.get(accountId, device.deviceId, now);
    if (reserved?.key_index !== device.keyIndex) {
      throw new ServerError("NotFound", "no live reservation for this device");
    }
    if (q.device.get(accountId, device.deviceId)) {
      throw new ServerError("Conflict", "device already exists");
    }
    insertDevice(accountId, device, now);
    q.dropReservation.run(accountId, device.deviceId);
  });

  const removeDevice = db.transaction((input: Parameters<ServerStore["removeDevice"]>[0]) => {
    if (input.deviceId === 1)
      throw new ServerError("InvalidRequest", "the primary cannot be removed");
    const current = q.account.get(input.accountId);
    if (!current) throw new ServerError("NotFound", "account not found");
    // An equal timestamp keeps the stored list: the server logs out a companion on its own
    // (primary offline too long) without a new list, which only the primary can sign.
    if (input.timestamp < current.device_list_timestamp) {
      throw new ServerError("StaleDeviceList", "device list is older than the stored one");
    }
    const dev = ctx.devKey(input.accountId, input.deviceId);
    if (dev === undefined) throw new ServerError("NotFound", "device not found");
    if (input.primarySeenBefore !== undefined) {
      const primary = q.device.get(input.accountId, 1);
      if (primary && primary.last_seen >= input.primarySeenBefore) {
        throw new ServerError("Conflict", "the primary has been seen since");
      }
    }
    if (input.timestamp > current.device_list_timestamp) {
      casDeviceList(input.accountId, input.signedDeviceList, input.timestamp);
    }
    for (const stmt of q.deleteDeviceRows) stmt.run(dev);
  });

  /** Runs a write to an account's devices, then drops what is cached about it (even on failure). */
  const devicesWrite = <T>(accountId: string, fn: () => T): Promise<T> =>
    run(() => {
      try {
        return fn();
      } finally {
        ctx.forget(accountId);
      }
    });

  return {
    createAccount: (input) =>
      devicesWrite(input.accountId, () => {
        createAccount(input);
      }),
    // Devices, their keys and queues, and reservations go with the account (ON DELETE CASCADE).
    deleteAccount: (accountId) =>
      devicesWrite(accountId, () => {
        if (q.deleteAccount.run(accountId).changes === 0)
          throw new ServerError("NotFound", "account not found");
      }),
    getAccount: (accountId) =>
      run(() => {
        const row = q.account.get(accountId);
        return row && toAccount(row);
      }),
    getDevice: (accountId, deviceId) =>
      run(() => {
        const row = q.device.get(accountId, deviceId);
        return row && toDevice(row);
      }),
    getDeviceByNoiseKey: (noiseKey) =>
      run(() => {
        const row = q.deviceByNoiseKey.get(noiseKey);
        return row && toDevice(row);
      }),
    listDevices: (accountId) =>
      run(() => {
        let list = ctx.deviceLists.get(accountId);
        if (!list) {
          list = q.devices.all(accountId).map(toDevice);
          if (ctx.deviceLists.size >= 50_000) ctx.deviceLists.clear();
          ctx.deviceLists.set(accountId, list);
        }
        // A copy: callers may sort or filter what they get.
        return list.map((d) => ({ ...d }));
      }),
    reserveCompanion: (input) => run(() => reserve(input)),
    getReservation: (accountId, deviceId, now) =>
      run(() => {
        const row = q.reservation.get(accountId, deviceId, now);
        return row && { keyIndex: row.key_index };
      }),
    addCompanion: (input) =>
      devicesWrite(input.accountId, () => {
        addCompanion(input);
      }),
    // One conditional UPDATE is atomic on its own; the read after it only picks the error.
    updateDeviceList: (input) =>
      run(() => {
        casDeviceList(input.accountId, input.signedDeviceList, input.timestamp);
      }),
    removeDevice: (input) =>
      devicesWrite(input.accountId, () => {
        removeDevice(input);
      }),
    // In the group commit, not a commit of its own: every authenticated connection and
    // disconnection touches its device. A commit of its own escaped the checkpointer's hold of
    // the group commit and kept the WAL from being started over: with only such writes coming in
    // (a script, 4 s, a restart asked for every 400 frames), 8 and 5 of 39 holds were followed by
    // a restart in two runs; with the touches in the group commit, 13 of 13. It checks before it
    // writes, as a group write must: anything but a ServerError fails the whole group. Only the
    // cached device lists hold last_seen; the device keys stay cached.
    touchDevice: (accountId, deviceId, now) => {
      if (typeof accountId !== "string" || !Number.isInteger(deviceId) || !Number.isFinite(now)) {
        return Promise.reject(new ServerError("InvalidRequest", "bad device activity"));
      }
      return groupWrite(() => {
        if (q.touch.run(now, accountId, deviceId, now).changes > 0) {
          ctx.deviceLists.delete(accountId);
        }
      });
    },
    listStaleCompanions: (before) =>
      run(() =>
        q.stale.all(before).map((r) => ({ accountId: r.account_id, deviceId: r.device_id })),
      ),
  };
}
