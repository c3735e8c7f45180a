/**
 * The server's storage contract. SQLite (the embedded default) and PostgreSQL (scale-out)
 * implement it with the same behaviour; one contract test suite runs against both. Every method
 * is atomic on its own; methods that must change several things together (enqueue all copies of
 * a message, remove a device with its keys and queue) do so in one transaction.
 *
 * All byte fields are opaque to the store; the server validates and verifies them before calling.
 * Failures are `ServerError`: "Conflict" (already exists), "NotFound", "StaleDeviceList",
 * "TooManyDevices", "Unavailable" (the database is unreachable).
 */
import { isRemoteId } from "../validate.ts";

export interface SignedPreKeyRecord {
  id: number;
  publicKey: Uint8Array;
  signature: Uint8Array;
}

export interface OneTimePreKeyRecord {
  id: number;
  publicKey: Uint8Array;
}

/** A device as the server keeps it. */
export interface DeviceRecord {
  accountId: string;
  deviceId: number;
  keyIndex: number;
  registrationId: number;
  identityKey: Uint8Array;
  signedDeviceIdentity: Uint8Array;
  /** The device's Noise static key: how it authenticates its connections. */
  noiseKey: Uint8Array;
  name: string;
  platform: string;
  linkedAt: number;
  lastSeen: number;
}

export interface AccountRecord {
  accountId: string;
  accountKey: Uint8Array;
  signedDeviceList: Uint8Array;
  deviceListTimestamp: number;
  createdAt: number;
}

/** Keys a device uploads; `signedPreKey` and `lastResortKyberPreKey` replace the current ones. */
export interface PreKeyUpload {
  signedPreKey?: SignedPreKeyRecord;
  lastResortKyberPreKey?: SignedPreKeyRecord;
  preKeys: OneTimePreKeyRecord[];
  kyberPreKeys: SignedPreKeyRecord[];
}

/** What the server hands out for one device: a one-time EC prekey (if any left) and a Kyber prekey (one-time, else last resort). */
export interface PreKeyBundleRecord {
  deviceId: number;
  registrationId: number;
  identityKey: Uint8Array;
  signedPreKey: SignedPreKeyRecord;
  preKey?: OneTimePreKeyRecord;
  kyberPreKey: SignedPreKeyRecord;
}

export interface NewDevice {
  deviceId: number;
  keyIndex: number;
  registrationId: number;
  identityKey: Uint8Array;
  signedDeviceIdentity: Uint8Array;
  noiseKey: Uint8Array;
  name: string;
  platform: string;
  keys: PreKeyUpload & {
    signedPreKey: SignedPreKeyRecord;
    lastResortKyberPreKey: SignedPreKeyRecord;
  };
}

/** One per-device copy to enqueue. `envelope` is opaque (the server's Envelope bytes without seq). */
export interface QueueInsert {
  accountId: string;
  deviceId: number;
  envelope: Uint8Array;
}

export interface QueuedMessage {
  seq: number;
  envelope: Uint8Array;
  enqueuedAt: number;
}

export interface GroupRecord {
  groupId: string;
  name: string;
  members: string[];
  revision: number;
  createdBy: string;
}

/** A device by account and device id (e.g. one a notice was queued for). */
export interface DeviceRef {
  accountId: string;
  deviceId: number;
}

/** Who joined and who left with one membership change, as the store applied it. */
export interface MembershipChange {
  added: string[];
  removed: string[];
}

/**
 * A server-originated notice queued with a membership change, in the change's transaction, for
 * every device of every local member it affects (added, removed and remaining).
 */
export interface GroupNoticeOptions {
  now: number;
  expiresAt: number;
  /** Builds the queued Envelope bytes from the record after the change and the actual change. */
  envelope: (group: GroupRecord, change: MembershipChange) => Uint8Array;
  /** A device that gets no notice: the one that made the change (its answer says it all). */
  skip?: DeviceRef;
}

/** What a membership change queued: the devices to wake. */
export interface GroupNoticeResult {
  notified: DeviceRef[];
}

/**
 * Who gets a notice: every member before or after the change, in that order, once, except users
 * of other providers (`name@provider`): they have no devices (nor queues) here, and their own
 * provider learns of the group over the federation link.
 */
export function noticeRecipients(before: readonly string[], after: readonly string[]): string[] {
  return [...new Set([...before, ...after])].filter((m) => !isRemoteId(m));
}

/** The change between two member lists, in member order. */
export function membershipChange(
  before: readonly string[],
  after: readonly string[],
): MembershipChange {
  const was = new Set(before);
  const is = new Set(after);
  return {
    added: after.filter((m) => !was.has(m)),
    removed: before.filter((m) => !is.has(m)),
  };
}

export interface ServerStore {
  // ------------------------------------------------------------ accounts and devices
  /** Creates an account with its primary (device 1). "Conflict" if the account id or noise key exists, "InvalidRequest" if `primary.deviceId` is not 1. */
  createAccount(input: {
    accountId: string;
    accountKey: Uint8Array;
    signedDeviceList: Uint8Array;
    deviceListTimestamp: number;
    primary: NewDevice;
    now: number;
  }): Promise<void>;
  getAccount(accountId: string): Promise<AccountRecord | undefined>;
  /**
   * Deletes an account with every device, key, reservation and queued message (one transaction).
   * The account id may then be registered anew. "NotFound" for an unknown account.
   */
  deleteAccount(accountId: string): Promise<void>;
  getDevice(accountId: string, deviceId: number): Promise<DeviceRecord | undefined>;
  getDeviceByNoiseKey(noiseKey: Uint8Array): Promise<DeviceRecord | undefined>;
  listDevices(accountId: string): Promise<DeviceRecord[]>;
  /**
   * Reserves the next device id (2..127, never reused within an account) and key index
   * (monotonic) for a companion. "TooManyDevices" when the account already has `maxCompanions`
   * companions (linked or reserved and not expired), or when ids up to 127 are used up (an
   * expired reservation's id stays spent). Reservations expire after `ttlMs`. "NotFound" for an
   * unknown account.
   */
  reserveCompanion(input: {
    accountId: string;
    maxCompanions: number;
    now: number;
    ttlMs: number;
  }): Promise<{ deviceId: number; keyIndex: number }>;
  /** Is this (device id, key index) reserved and unexpired for the account? */
  getReservation(
    accountId: string,
    deviceId: number,
    now: number,
  ): Promise<{ keyIndex: number } | undefined>;
  /** Adds a companion for a reservation (consumed). "Conflict" if the device id or noise key exists, "NotFound" without a live reservation for that device id and key index. */
  addCompanion(input: { accountId: string; device: NewDevice; now: number }): Promise<void>;
  /**
   * Replaces the account's signed device list if `timestamp` is greater than the stored one
   * (compare-and-set; "StaleDeviceList" otherwise). "NotFound" for an unknown account.
   */
  updateDeviceList(input: {
    accountId: string;
    signedDeviceList: Uint8Array;
    timestamp: number;
  }): Promise<void>;
  /**
   * Removes a device with its keys and queue, and stores the new device list, in one transaction.
   * A `timestamp` equal to the stored one keeps the stored list (server-side logout, which cannot
   * sign a list); an older one is "StaleDeviceList". "NotFound" for an unknown account or device,
   * "InvalidRequest" for device 1. With `primarySeenBefore`, the device goes only if the
   * account's primary was last seen before it, read in the same transaction as the removal
   * (a cluster node's companion expiry, which another node's write of the primary's `last_seen`
   * must be able to stop); otherwise "Conflict". Nothing changes on error.
   */
  removeDevice(input: {
    accountId: string;
    deviceId: number;
    signedDeviceList: Uint8Array;
    timestamp: number;
    primarySeenBefore?: number;
  }): Promise<void>;
  /** Records activity; cheap, may be batched. */
  touchDevice(accountId: string, deviceId: number, now: number): Promise<void>;
  /** Companions of accounts whose primary was last seen before `before`; for the 14-day rule. */
  listStaleCompanions(before: number): Promise<Array<{ accountId: string; deviceId: number }>>;

  // ------------------------------------------------------------ prekeys
  /** Stores an upload (a one-time key id already present is replaced). "NotFound" for an unknown device. */
  putPreKeys(accountId: string, deviceId: number, upload: PreKeyUpload, now: number): Promise<void>;
  /** Pops one one-time EC prekey and one one-time Kyber prekey (else the last-resort one), atomically: each handed out once. Undefined for an unknown device. */
  takePreKeyBundle(accountId: string, deviceId: number): Promise<PreKeyBundleRecord | undefined>;
  /** One-time keys left (the last-resort Kyber key not counted). "NotFound" for an unknown device. */
  countPreKeys(
    accountId: string,
    deviceId: number,
  ): Promise<{ preKeys: number; kyberPreKeys: number; signedPreKeyUploadedAt: number }>;

  // ------------------------------------------------------------ queues
  /**
   * Enqueues every copy in one transaction and returns their seqs (in `inserts` order). With
   * `dedupKey` (opaque here; the handlers give a keyed digest of sender and message id, see
   * `submissionKeys`), a second call with the same key stores
   * nothing and returns `{ seqs: [], duplicate: true }` until the key's `expiresAt` passes. If any
   * copy names an unknown device: "NotFound", nothing stored and the dedup key not spent.
   */
  enqueue(
    inserts: QueueInsert[],
    options: { now: number; expiresAt: number; dedupKey?: string },
  ): Promise<{ seqs: number[]; duplicate: boolean }>;
  /**
   * The device's queued messages with seq > afterSeq, oldest first, at most `limit` (none if
   * `limit` < 1 or the device is unknown). With `now`, messages expired by then are left out:
   * `expire` deletes them later, in its own time, and until then they are not delivered.
   */
  fetchQueue(
    accountId: string,
    deviceId: number,
    afterSeq: number,
    limit: number,
    now?: number,
  ): Promise<QueuedMessage[]>;
  /** Deletes acknowledged messages of that device (seqs of other devices are ignored); returns how many were deleted. */
  ack(accountId: string, deviceId: number, seqs: number[]): Promise<number>;
  /**
   * Deletes messages past their expiry (and old dedup keys and reservations); returns how many
   * messages. A store may spread a very large sweep over several calls (SQLite: 200,000 rows of
   * each table per call).
   */
  expire(now: number): Promise<number>;
  /** Total queued messages (for metrics). */
  queueDepth(): Promise<number>;

  // ------------------------------------------------------------ groups
  /**
   * "Conflict" if the group id exists. Members keep the order they were added in; duplicates are
   * dropped. With `notice`, a notice (every member added) is queued in the same transaction.
   */
  createGroup(group: GroupRecord, notice?: GroupNoticeOptions): Promise<GroupNoticeResult>;
  getGroup(groupId: string): Promise<GroupRecord | undefined>;
  /**
   * Removes then adds members, increments the revision; returns the new record. With `notice`, a
   * notice of the actual change is queued in the same transaction (see
   * {@link GroupNoticeOptions}). "NotFound" for an unknown group; nothing changes on error.
   */
  updateGroup(
    groupId: string,
    change: { add: string[]; remove: string[] },
    notice?: GroupNoticeOptions,
  ): Promise<GroupRecord & GroupNoticeResult>;

  // ------------------------------------------------------------ blobs (metadata; bytes live on disk or S3)
  /** "Conflict" if the blob id exists. */
  putBlob(blob: {
    blobId: string;
    size: number;
    sha256: Uint8Array;
    owner: string;
    now: number;
  }): Promise<void>;
  getBlob(
    blobId: string,
  ): Promise<{ blobId: string; size: number; sha256: Uint8Array } | undefined>;

  // ------------------------------------------------------------ invites
  /** Consumes an invite token; false if unknown or used. */
  useInvite(token: string, now: number): Promise<boolean>;
  /** "Conflict" if the token exists. */
  addInvite(token: string, now: number): Promise<void>;

  // ------------------------------------------------------------ backup key vault (OPAQUE)
  /** Stores a vault record (insert only). "Conflict" if the vault id exists. */
  createVaultRecord(input: {
    vaultId: string;
    registrationRecord: string;
    wrappedKey: Uint8Array;
    now: number;
  }): Promise<void>;
  /** A vault record and its guess count, without counting anything; undefined if unknown. */
  getVaultRecord(
    vaultId: string,
  ): Promise<{ registrationRecord: string; guesses: number } | undefined>;
  /**
   * Counts one password guess and stores the started login with it, in one transaction: if the
   * record has had fewer than `maxGuesses` guesses since its last successful login, increments
   * the count, keeps `login` until its `expiresAt` and returns the new count. Otherwise returns
   * "locked" and, once no started login of it is still live at `now`, deletes the record.
   * Undefined for an unknown id. Concurrent calls (from any number of processes) can never
   * hand out more than `maxGuesses` guesses, and a counted guess always has its login stored.
   */
  countVaultGuess(input: {
    vaultId: string;
    maxGuesses: number;
    now: number;
    login: { loginId: string; state: string; expiresAt: number };
  }): Promise<{ guesses: number } | "locked" | undefined>;
  /** Removes and returns a started login (each finishes at most once); undefined if unknown or expired. */
  takeVaultLogin(
    loginId: string,
    now: number,
  ): Promise<{ vaultId: string; state: string } | undefined>;
  /** After a successful login: resets the guess count and returns the wrapped key (undefined if the record is gone). */
  vaultLoginSucceeded(vaultId: string): Promise<{ wrappedKey: Uint8Array } | undefined>;
  /**
   * After a failed login: deletes the record if it has used up `maxGuesses` and no other started
   * login of it is live at `now`; true if it did.
   */
  vaultLoginFailed(vaultId: string, maxGuesses: number, now: number): Promise<boolean>;
  /** Deletes a vault record and its started logins; false if there was none. */
  deleteVaultRecord(vaultId: string): Promise<boolean>;

  /** Health check: resolves if the database answers. */
  ping(): Promise<void>;
  /** Idempotent; afterwards every method rejects with "Unavailable". */
  close(): Promise<void>;
}
