import type { IdentityKeyPair } from "@signalapp/libsignal-client";
import {
  CiphertextMessageType,
  ErrorCode,
  LibSignalErrorBase,
  PreKeySignalMessage,
  ProtocolAddress,
  SignalMessage,
  processPreKeyBundle,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
} from "@signalapp/libsignal-client";
import { bytesEqual, toBytes } from "./bytes.ts";
import { CoreError } from "./errors.ts";
import { KeyedMutex } from "./keyed-mutex.ts";
import {
  DEFAULT_PREKEY_POLICY,
  createDeviceIdentity,
  createKyberPreKey,
  createOneTimePreKeys,
  createSignedPreKey,
  nextPreKeyId,
  shouldRotateSignedPreKey,
  type PreKeyPolicy,
  type PublicPreKey,
  type PublicSignedPreKey,
} from "./keys.ts";
import { LibsignalStores, identityFromBytes } from "./libsignal-stores.ts";
import { decodePreKeyBundle } from "./prekey-bundle.ts";
import {
  DeviceState,
  addressKey,
  type DeviceAddress,
  type LocalAccount,
  type StateTransaction,
} from "./store/device-state.ts";
import type { KeyValueStore } from "./store/kv-store.ts";

/** One device's copy of a message: a PQXDH prekey message (first contact) or a ratchet message. */
export interface DeviceCiphertext {
  address: DeviceAddress;
  type: "prekey" | "message";
  body: Uint8Array;
}

/** A device to encrypt to: its ADV-verified identity key, plus a prekey bundle if no session yet. */
export interface EncryptTarget {
  address: DeviceAddress;
  /** The device identity key ADV verified (see `selectTrustedDevices`); a bundle must match it. */
  identityPublic: Uint8Array;
  /** `PreKeyBundleMessage` bytes from the server, needed when there is no session yet. */
  bundle?: Uint8Array;
  /** This device's own plaintext, instead of the one passed to `encrypt` (e.g. a sync copy). */
  plaintext?: Uint8Array;
}

/** The public keys a device uploads to the server. */
export interface KeyUpload {
  registrationId: number;
  identityKey: Uint8Array;
  signedPreKey?: PublicSignedPreKey;
  lastResortKyberPreKey?: PublicSignedPreKey;
  preKeys: PublicPreKey[];
  kyberPreKeys: PublicSignedPreKey[];
}

/** Options for {@link DeviceCrypto.open}. */
export interface DeviceCryptoOptions {
  store: KeyValueStore;
  /** Clock in ms; injectable for tests. */
  now?: () => number;
  policy?: PreKeyPolicy;
}

const MAX_CIPHERTEXT = 256 * 1024;

function mapLibsignalError(err: unknown): CoreError {
  if (CoreError.is(err)) return err;
  if (err instanceof LibSignalErrorBase) {
    switch (err.code) {
      case ErrorCode.DuplicatedMessage:
        return new CoreError("DuplicateMessage", "message was already decrypted", { cause: err });
      case ErrorCode.UntrustedIdentity:
        return new CoreError("UntrustedDevice", "device identity key changed", { cause: err });
      case ErrorCode.InvalidSession:
        return new CoreError("NoSession", "no usable session with that device", { cause: err });
      default:
        break;
    }
  }
  return new CoreError("DecryptionFailed", "ciphertext does not decrypt", { cause: err });
}

/**
 * The Signal Protocol half of a device: its identity and prekeys, pairwise sessions and client
 * fan-out, over one {@link KeyValueStore}. Every operation runs in one store transaction (the
 * session change and what the caller records commit together) and operations on the same remote
 * device are serialised.
 */
export class DeviceCrypto {
  readonly state: DeviceState;
  /** Serialises work per remote device; shared with group operations. */
  readonly mutex = new KeyedMutex();
  readonly identity: IdentityKeyPair;
  readonly registrationId: number;
  private readonly now: () => number;
  private readonly policy: PreKeyPolicy;
  private cachedAccount: LocalAccount | undefined;
  private cachedLocalAddress: ProtocolAddress | undefined;
  private readonly remoteAddresses = new Map<string, ProtocolAddress>();

  private constructor(
    state: DeviceState,
    identity: IdentityKeyPair,
    registrationId: number,
    options: DeviceCryptoOptions,
  ) {
    this.state = state;
    this.identity = identity;
    this.registrationId = registrationId;
    this.now = options.now ?? Date.now;
    this.policy = options.policy ?? DEFAULT_PREKEY_POLICY;
  }

  /** Opens a device's state, creating its identity key and registration id on first use. */
  static open(options: DeviceCryptoOptions): DeviceCrypto {
    const state = new DeviceState(options.store);
    let local = state.getLocalIdentity();
    if (!local) {
      const created = createDeviceIdentity();
      local = {
        identityKeyPair: created.identity.serialize(),
        registrationId: created.registrationId,
      };
      state.setLocalIdentity(local);
    }
    return new DeviceCrypto(
      state,
      identityFromBytes(local.identityKeyPair),
      local.registrationId,
      options,
    );
  }

  /** This device's identity public key (33 bytes). */
  get identityPublic(): Uint8Array {
    return this.identity.publicKey.serialize();
  }

  /** The account this device belongs to, once registered or linked. */
  get account(): LocalAccount | undefined {
    return (this.cachedAccount ??= this.state.getLocalAccount());
  }

  /** Records the account this device belongs to (after registering or linking). */
  setAccount(account: LocalAccount): void {
    this.state.setLocalAccount(account);
    this.cachedAccount = account;
    this.cachedLocalAddress = undefined;
  }

  private localAddress(): ProtocolAddress {
    if (this.cachedLocalAddress) return this.cachedLocalAddress;
    const account = this.account;
    if (!account)
      throw new CoreError("InvalidArgument", "device does not belong to an account yet");
    return (this.cachedLocalAddress = ProtocolAddress.new(account.accountId, account.deviceId));
  }

  /** A libsignal address for a remote device, created once per device (it is a native object). */
  private protocolAddress(address: DeviceAddress): ProtocolAddress {
    const key = addressKey(address);
    let found = this.remoteAddresses.get(key);
    if (!found) {
      if (this.remoteAddresses.size >= 10_000) this.remoteAddresses.clear();
      found = ProtocolAddress.new(address.accountId, address.deviceId);
      this.remoteAddresses.set(key, found);
    }
    return found;
  }

  /** libsignal stores bound to a transaction. */
  stores(view: StateTransaction): LibsignalStores {
    return new LibsignalStores(view, {
      identity: this.identity,
      registrationId: this.registrationId,
    });
  }

  /**
   * Creates prekeys to upload and stores their private halves: `oneTime` one-time EC and Kyber
   * prekeys, and a new signed prekey plus last-resort Kyber prekey when `rotate` is set or none
   * exists yet. All stored in one transaction.
   */
  createKeyUpload(options: { oneTime?: number; rotate?: boolean } = {}): KeyUpload {
    const tx = this.state.begin();
    const now = this.now();
    const upload: KeyUpload = {
      registrationId: this.registrationId,
      identityKey: this.identityPublic,
      preKeys: [],
      kyberPreKeys: [],
    };
    const signedId = tx.getCounter("signed-prekey");
    const signedAt = tx.getCounter("signed-prekey-at");
    if (options.rotate || signedId === 0 || shouldRotateSignedPreKey(signedAt, now, this.policy)) {
      const id = nextPreKeyId(signedId);
      const signed = createSignedPreKey(this.identity, id, now);
      tx.setSignedPreKey(id, signed.record.serialize());
      const lastResortId = nextPreKeyId(tx.getCounter("kyber-prekey"));
      const lastResort = createKyberPreKey(this.identity, lastResortId, now);
      tx.setKyberPreKey(lastResortId, { record: lastResort.record.serialize(), lastResort: true });
      tx.setCounter("kyber-prekey", lastResortId);
      tx.setCounter("signed-prekey", id);
      tx.setCounter("signed-prekey-at", now);
      upload.signedPreKey = signed.public;
      upload.lastResortKyberPreKey = lastResort.public;
    }
    const count = options.oneTime ?? 0;
    if (count > 0) {
      const first = nextPreKeyId(tx.getCounter("prekey"));
      for (const k of createOneTimePreKeys(first, count)) {
        tx.setPreKey(k.public.id, k.record.serialize());
        upload.preKeys.push(k.public);
        tx.setCounter("prekey", k.public.id);
      }
      let kyberId = tx.getCounter("kyber-prekey");
      for (let i = 0; i < count; i++) {
        kyberId = nextPreKeyId(kyberId);
        const k = createKyberPreKey(this.identity, kyberId, now);
        tx.setKyberPreKey(kyberId, { record: k.record.serialize(), lastResort: false });
        upload.kyberPreKeys.push(k.public);
      }
      tx.setCounter("kyber-prekey", kyberId);
    }
    tx.commit();
    return upload;
  }

  /** Whether a pairwise session with that device exists. */
  hasSession(address: DeviceAddress): boolean {
    return this.state.getSession(address) !== undefined;
  }

  /** The devices among `addresses` that need a prekey bundle before we can encrypt to them. */
  devicesWithoutSession(addresses: readonly DeviceAddress[]): DeviceAddress[] {
    return addresses.filter((a) => !this.hasSession(a));
  }

  /** Forgets the session with a device (e.g. it was removed, or a retry asks for a fresh one). */
  async deleteSession(address: DeviceAddress): Promise<void> {
    await this.mutex.run([addressKey(address)], () => {
      this.state.setSession(address, null);
      return Promise.resolve();
    });
  }

  /**
   * Client fan-out: encrypts one (already padded) plaintext separately for every target device,
   * starting sessions from prekey bundles where needed, and commits every session change — plus
   * whatever `record` adds — in one transaction. A bundle whose identity key is not the one ADV
   * verified is refused (`CoreError("UntrustedDevice")`) and nothing is stored.
   */
  async encrypt(
    targets: readonly EncryptTarget[],
    plaintext: Uint8Array,
    options: { record?: (tx: StateTransaction) => void } = {},
  ): Promise<DeviceCiphertext[]> {
    const local = this.localAddress();
    const message = toBytes(plaintext);
    return this.mutex.run(
      targets.map((t) => addressKey(t.address)),
      async () => {
        const tx = this.state.begin();
        const stores = this.stores(tx);
        const out: DeviceCiphertext[] = [];
        try {
          for (const target of targets) {
            const remote = this.protocolAddress(target.address);
            const known = tx.getRemoteIdentity(target.address);
            if (known && !bytesEqual(known, target.identityPublic)) {
              throw new CoreError(
                "UntrustedDevice",
                "device identity differs from the one we have",
              );
            }
            if (!tx.getSession(target.address)) {
              if (!target.bundle)
                throw new CoreError("NoSession", "no session and no prekey bundle for a device");
              const { bundle, info } = decodePreKeyBundle(target.bundle);
              if (
                !bytesEqual(info.identityKey, target.identityPublic) ||
                info.deviceId !== target.address.deviceId
              ) {
                throw new CoreError(
                  "UntrustedDevice",
                  "prekey bundle is not for the verified device",
                );
              }
              tx.setRemoteIdentity(target.address, target.identityPublic);
              await processPreKeyBundle(
                bundle,
                remote,
                local,
                stores.session,
                stores.identity,
                new Date(this.now()),
              );
            }
            const ct = await signalEncrypt(
              target.plaintext ? toBytes(target.plaintext) : message,
              remote,
              local,
              stores.session,
              stores.identity,
              new Date(this.now()),
            );
            out.push({
              address: target.address,
              type: ct.type() === (CiphertextMessageType.PreKey as number) ? "prekey" : "message",
              body: ct.serialize(),
            });
          }
          options.record?.(tx);
          tx.commit();
          return out;
        } catch (err) {
          tx.rollback();
          throw mapLibsignalError(err);
        }
      },
    );
  }

  /**
   * Decrypts one device's ciphertext from `sender`. `record` runs inside the transaction with the
   * plaintext (store the message there); the session advance and the record commit together, or
   * neither does. Throws `CoreError` — `"DecryptionFailed"`, `"DuplicateMessage"`, `"NoSession"`,
   * `"UntrustedDevice"`, `"MalformedInput"` — with stored state unchanged.
   */
  async decrypt<T>(
    sender: DeviceAddress,
    ciphertext: { type: "prekey" | "message"; body: Uint8Array },
    record: (plaintext: Uint8Array, tx: StateTransaction) => T,
  ): Promise<T> {
    if (ciphertext.body.length > MAX_CIPHERTEXT)
      throw new CoreError("InputTooLarge", "ciphertext too large");
    const local = this.localAddress();
    const remote = this.protocolAddress(sender);
    return this.mutex.run([addressKey(sender)], async () => {
      const tx = this.state.begin();
      const stores = this.stores(tx);
      try {
        let plaintext: Uint8Array;
        if (ciphertext.type === "prekey") {
          let parsed: PreKeySignalMessage;
          try {
            parsed = PreKeySignalMessage.deserialize(toBytes(ciphertext.body));
          } catch (cause) {
            throw new CoreError("MalformedInput", "prekey message does not parse", { cause });
          }
          plaintext = await signalDecryptPreKey(
            parsed,
            remote,
            local,
            stores.session,
            stores.identity,
            stores.preKey,
            stores.signedPreKey,
            stores.kyberPreKey,
          );
        } else {
          let parsed: SignalMessage;
          try {
            parsed = SignalMessage.deserialize(toBytes(ciphertext.body));
          } catch (cause) {
            throw new CoreError("MalformedInput", "message does not parse", { cause });
          }
          plaintext = await signalDecrypt(parsed, remote, local, stores.session, stores.identity);
        }
        const result = record(plaintext, tx);
        tx.commit();
        return result;
      } catch (err) {
        tx.rollback();
        throw mapLibsignalError(err);
      }
    });
  }
}
