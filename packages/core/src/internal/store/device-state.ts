import { CoreError } from "../errors.ts";
import { KEY_SEPARATOR, type KeyValueStore, type StoreTable, type StoreWrite } from "./kv-store.ts";
import { decodeRecord, encodeRecord, is } from "./record-codec.ts";

/** A remote (or local) device: account id and device id (1 = primary, 2..127 companions). */
export interface DeviceAddress {
  accountId: string;
  deviceId: number;
}

/** The key of a device in every per-device table: `account|device`. */
export function addressKey(address: DeviceAddress): string {
  return `${address.accountId}${KEY_SEPARATOR}${address.deviceId}`;
}

/** This device's own Signal identity, created before it belongs to any account. */
export interface LocalIdentity {
  /** libsignal `IdentityKeyPair.serialize()` bytes. */
  identityKeyPair: Uint8Array;
  registrationId: number;
}

/** The account this device belongs to, once registered (primary) or linked (companion). */
export interface LocalAccount {
  accountId: string;
  deviceId: number;
  /** Account identity public key (ADV root), 33 bytes. */
  accountPublic: Uint8Array;
  /** Account identity private key: only on the primary. */
  accountPrivate?: Uint8Array;
  /** This device's SignedDeviceIdentity bytes. */
  signedDeviceIdentity: Uint8Array;
}

/** What we trust as a contact's account key (trust on first use). */
export interface ContactKeyRecord {
  accountPublic: Uint8Array;
  firstSeen: number;
  verified: boolean;
  /** A different key the server presented later; not trusted until accepted. */
  pendingKey?: Uint8Array;
}

/** The newest signed device list seen for an account, with the devices it let us trust. */
export interface DeviceListCache {
  timestamp: number;
  signedList: Uint8Array;
  devices: Array<{ deviceId: number; keyIndex: number; identityPublic: Uint8Array }>;
}

/** Our sender key state for one group. */
export interface GroupSenderState {
  /** 16-byte distribution id (UUID) of our current sender key. */
  distributionId: Uint8Array;
  /** Address keys of the devices that hold our current sender key. */
  sharedWith: string[];
}

const kyberPrefix = { oneTime: 0, lastResort: 1 } as const;

/**
 * Typed access to everything a device keeps, on top of a {@link KeyValueStore}. Reads go to
 * `read`, writes to `write`: the store itself for {@link DeviceState}, a buffered overlay for
 * {@link StateTransaction} so a whole operation commits atomically.
 */
export abstract class StateView {
  protected abstract read(table: StoreTable, key: string): Uint8Array | undefined;
  protected abstract write(table: StoreTable, key: string, value: Uint8Array | null): void;

  getLocalIdentity(): LocalIdentity | undefined {
    const b = this.read("meta", "identity");
    return (
      b &&
      decodeRecord(b, "identity", (r) =>
        is.object(r) && is.bytes(r.identityKeyPair) && is.int(r.registrationId)
          ? { identityKeyPair: r.identityKeyPair, registrationId: r.registrationId }
          : undefined,
      )
    );
  }
  setLocalIdentity(identity: LocalIdentity): void {
    this.write("meta", "identity", encodeRecord(identity));
  }

  getLocalAccount(): LocalAccount | undefined {
    const b = this.read("meta", "account");
    return (
      b &&
      decodeRecord(b, "account", (r) => {
        if (
          !is.object(r) ||
          !is.string(r.accountId) ||
          !is.int(r.deviceId) ||
          !is.bytes(r.accountPublic)
        )
          return undefined;
        if (!is.bytes(r.signedDeviceIdentity)) return undefined;
        const account: LocalAccount = {
          accountId: r.accountId,
          deviceId: r.deviceId,
          accountPublic: r.accountPublic,
          signedDeviceIdentity: r.signedDeviceIdentity,
        };
        if (is.bytes(r.accountPrivate)) account.accountPrivate = r.accountPrivate;
        return account;
      })
    );
  }
  setLocalAccount(account: LocalAccount): void {
    this.write("meta", "account", encodeRecord(account));
  }

  /** A numeric counter in `meta` (prekey ids, key indexes); 0 when never set. */
  getCounter(name: string): number {
    const b = this.read("meta", `counter${KEY_SEPARATOR}${name}`);
    return b ? decodeRecord(b, "counter", (r) => (is.int(r) ? r : undefined)) : 0;
  }
  setCounter(name: string, value: number): void {
    this.write("meta", `counter${KEY_SEPARATOR}${name}`, encodeRecord(value));
  }

  getSession(address: DeviceAddress): Uint8Array | undefined {
    return this.read("session", addressKey(address));
  }
  setSession(address: DeviceAddress, record: Uint8Array | null): void {
    this.write("session", addressKey(address), record);
  }

  getRemoteIdentity(address: DeviceAddress): Uint8Array | undefined {
    return this.read("identity", addressKey(address));
  }
  setRemoteIdentity(address: DeviceAddress, publicKey: Uint8Array | null): void {
    this.write("identity", addressKey(address), publicKey);
  }

  getPreKey(id: number): Uint8Array | undefined {
    return this.read("prekey", String(id));
  }
  setPreKey(id: number, record: Uint8Array | null): void {
    this.write("prekey", String(id), record);
  }

  getSignedPreKey(id: number): Uint8Array | undefined {
    return this.read("signed-prekey", String(id));
  }
  setSignedPreKey(id: number, record: Uint8Array | null): void {
    this.write("signed-prekey", String(id), record);
  }

  getKyberPreKey(id: number): { record: Uint8Array; lastResort: boolean } | undefined {
    const b = this.read("kyber-prekey", String(id));
    if (!b || b.length < 2) return undefined;
    return { record: b.subarray(1), lastResort: b[0] === kyberPrefix.lastResort };
  }
  setKyberPreKey(id: number, value: { record: Uint8Array; lastResort: boolean } | null): void {
    if (value === null) {
      this.write("kyber-prekey", String(id), null);
      return;
    }
    const b = new Uint8Array(value.record.length + 1);
    b[0] = value.lastResort ? kyberPrefix.lastResort : kyberPrefix.oneTime;
    b.set(value.record, 1);
    this.write("kyber-prekey", String(id), b);
  }

  getSenderKey(sender: DeviceAddress, distributionId: string): Uint8Array | undefined {
    return this.read("sender-key", `${addressKey(sender)}${KEY_SEPARATOR}${distributionId}`);
  }
  setSenderKey(sender: DeviceAddress, distributionId: string, record: Uint8Array | null): void {
    this.write("sender-key", `${addressKey(sender)}${KEY_SEPARATOR}${distributionId}`, record);
  }

  getGroupSenderState(groupId: string): GroupSenderState | undefined {
    const b = this.read("sender-key-shared", groupId);
    return (
      b &&
      decodeRecord(b, "group sender state", (r) =>
        is.object(r) &&
        is.bytes(r.distributionId) &&
        Array.isArray(r.sharedWith) &&
        r.sharedWith.every(is.string)
          ? { distributionId: r.distributionId, sharedWith: r.sharedWith }
          : undefined,
      )
    );
  }
  setGroupSenderState(groupId: string, state: GroupSenderState | null): void {
    this.write("sender-key-shared", groupId, state && encodeRecord(state));
  }

  getContactKey(accountId: string): ContactKeyRecord | undefined {
    const b = this.read("contact-key", accountId);
    return (
      b &&
      decodeRecord(b, "contact key", (r) => {
        if (
          !is.object(r) ||
          !is.bytes(r.accountPublic) ||
          !is.int(r.firstSeen) ||
          typeof r.verified !== "boolean"
        )
          return undefined;
        const rec: ContactKeyRecord = {
          accountPublic: r.accountPublic,
          firstSeen: r.firstSeen,
          verified: r.verified,
        };
        if (is.bytes(r.pendingKey)) rec.pendingKey = r.pendingKey;
        return rec;
      })
    );
  }
  setContactKey(accountId: string, record: ContactKeyRecord | null): void {
    this.write("contact-key", accountId, record && encodeRecord(record));
  }

  getDeviceList(accountId: string): DeviceListCache | undefined {
    const b = this.read("device-list", accountId);
    return (
      b &&
      decodeRecord(b, "device list", (r) => {
        if (
          !is.object(r) ||
          !is.int(r.timestamp) ||
          !is.bytes(r.signedList) ||
          !Array.isArray(r.devices)
        )
          return undefined;
        const devices: DeviceListCache["devices"] = [];
        for (const d of r.devices as unknown[]) {
          if (
            !is.object(d) ||
            !is.int(d.deviceId) ||
            !is.int(d.keyIndex) ||
            !is.bytes(d.identityPublic)
          )
            return undefined;
          devices.push({
            deviceId: d.deviceId,
            keyIndex: d.keyIndex,
            identityPublic: d.identityPublic,
          });
        }
        return { timestamp: r.timestamp, signedList: r.signedList, devices };
      })
    );
  }
  setDeviceList(accountId: string, cache: DeviceListCache | null): void {
    this.write("device-list", accountId, cache && encodeRecord(cache));
  }

  /** Whether a message id from this sender device was already processed (deduplication). */
  wasProcessed(sender: DeviceAddress, messageId: string): boolean {
    return (
      this.read("processed", `${addressKey(sender)}${KEY_SEPARATOR}${messageId}`) !== undefined
    );
  }
  markProcessed(sender: DeviceAddress, messageId: string, at: number): void {
    this.write("processed", `${addressKey(sender)}${KEY_SEPARATOR}${messageId}`, encodeRecord(at));
  }
}

/** The device's state read and written directly against its store (each write is its own commit). */
export class DeviceState extends StateView {
  constructor(readonly store: KeyValueStore) {
    super();
  }
  protected read(table: StoreTable, key: string) {
    return this.store.get(table, key);
  }
  protected write(table: StoreTable, key: string, value: Uint8Array | null) {
    this.store.apply([{ table, key, value }]);
  }
  /** Starts a buffered transaction: reads see its own writes; nothing is stored until `commit`. */
  begin(): StateTransaction {
    return new StateTransaction(this.store);
  }
  /** Every stored key of a table under a prefix (e.g. all sessions of one account). */
  keys(table: StoreTable, prefix = ""): string[] {
    return this.store.list(table, prefix).map(([k]) => k);
  }
  count(table: StoreTable): number {
    return this.store.count(table);
  }
}

/**
 * A unit of work: libsignal's store callbacks and the caller's own records write here, and
 * `commit` applies all of it in one store transaction — so a session update and the message it
 * decrypted are stored together or not at all.
 */
export class StateTransaction extends StateView {
  private readonly pending = new Map<string, StoreWrite>();
  private done = false;

  constructor(private readonly store: KeyValueStore) {
    super();
  }
  protected read(table: StoreTable, key: string) {
    const w = this.pending.get(`${table}\n${key}`);
    if (w) return w.value ?? undefined;
    return this.store.get(table, key);
  }
  protected write(table: StoreTable, key: string, value: Uint8Array | null) {
    if (this.done) throw new CoreError("InvalidArgument", "transaction already finished");
    this.pending.set(`${table}\n${key}`, { table, key, value });
  }
  /** Adds a raw write (for tables owned by the caller's own records). */
  put(write: StoreWrite): void {
    this.write(write.table, write.key, write.value);
  }
  /** Applies every buffered write atomically. */
  commit(): void {
    if (this.done) throw new CoreError("InvalidArgument", "transaction already finished");
    this.done = true;
    this.store.apply([...this.pending.values()]);
  }
  /** Drops every buffered write. */
  rollback(): void {
    this.done = true;
    this.pending.clear();
  }
}
