import type { Direction, ProtocolAddress } from "@signalapp/libsignal-client";
import {
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyRecord,
  PreKeyStore,
  PrivateKey,
  PublicKey,
  SenderKeyRecord,
  SenderKeyStore,
  SessionRecord,
  SessionStore,
  SignedPreKeyRecord,
  SignedPreKeyStore,
} from "@signalapp/libsignal-client";
import { asBytes, bytesEqual, toBytes } from "./bytes.ts";
import { CoreError } from "./errors.ts";
import type { DeviceAddress, StateView } from "./store/device-state.ts";

const addr = (a: ProtocolAddress): DeviceAddress => ({
  accountId: a.name(),
  deviceId: a.deviceId(),
});

interface Local {
  identity: IdentityKeyPair;
  registrationId: number;
}

// The classes are defined once at module level (not per operation) so V8 keeps them optimised
// on the per-message hot path; each instance is bound to one StateView.
class Sessions extends SessionStore {
  constructor(private readonly view: StateView) {
    super();
  }
  saveSession(name: ProtocolAddress, record: SessionRecord) {
    this.view.setSession(addr(name), record.serialize());
    return Promise.resolve();
  }
  getSession(name: ProtocolAddress) {
    const b = this.view.getSession(addr(name));
    return Promise.resolve(b ? SessionRecord.deserialize(asBytes(b)) : null);
  }
  getExistingSessions(addresses: ProtocolAddress[]) {
    return Promise.resolve(
      addresses.map((a) => {
        const b = this.view.getSession(addr(a));
        if (!b) throw new CoreError("NoSession", "no session for a requested device");
        return SessionRecord.deserialize(asBytes(b));
      }),
    );
  }
}

class Identities extends IdentityKeyStore {
  constructor(
    private readonly view: StateView,
    private readonly local: Local,
  ) {
    super();
  }
  getIdentityKey() {
    return Promise.resolve(this.local.identity.privateKey);
  }
  override getIdentityKeyPair() {
    return Promise.resolve(this.local.identity);
  }
  getLocalRegistrationId() {
    return Promise.resolve(this.local.registrationId);
  }
  saveIdentity(name: ProtocolAddress, key: PublicKey) {
    const existing = this.view.getRemoteIdentity(addr(name));
    const serialized = key.serialize();
    if (existing && bytesEqual(existing, serialized))
      return Promise.resolve(IdentityChange.NewOrUnchanged);
    this.view.setRemoteIdentity(addr(name), serialized);
    return Promise.resolve(
      existing ? IdentityChange.ReplacedExisting : IdentityChange.NewOrUnchanged,
    );
  }
  // A device id is never reused inside an account, so a device's identity key never changes:
  // a different key for a known device is refused both ways. New devices are trusted here
  // because ADV (device identities signed by the account key) is checked before we encrypt.
  isTrustedIdentity(name: ProtocolAddress, key: PublicKey, _direction: Direction) {
    const existing = this.view.getRemoteIdentity(addr(name));
    return Promise.resolve(!existing || bytesEqual(existing, key.serialize()));
  }
  getIdentity(name: ProtocolAddress) {
    const b = this.view.getRemoteIdentity(addr(name));
    return Promise.resolve(b ? PublicKey.deserialize(asBytes(b)) : null);
  }
}

class PreKeys extends PreKeyStore {
  constructor(private readonly view: StateView) {
    super();
  }
  savePreKey(id: number, record: PreKeyRecord) {
    this.view.setPreKey(id, record.serialize());
    return Promise.resolve();
  }
  getPreKey(id: number) {
    const b = this.view.getPreKey(id);
    if (!b) return Promise.reject(new CoreError("InvalidKey", "unknown one-time prekey"));
    return Promise.resolve(PreKeyRecord.deserialize(asBytes(b)));
  }
  removePreKey(id: number) {
    this.view.setPreKey(id, null);
    return Promise.resolve();
  }
}

class SignedPreKeys extends SignedPreKeyStore {
  constructor(private readonly view: StateView) {
    super();
  }
  saveSignedPreKey(id: number, record: SignedPreKeyRecord) {
    this.view.setSignedPreKey(id, record.serialize());
    return Promise.resolve();
  }
  getSignedPreKey(id: number) {
    const b = this.view.getSignedPreKey(id);
    if (!b) return Promise.reject(new CoreError("InvalidKey", "unknown signed prekey"));
    return Promise.resolve(SignedPreKeyRecord.deserialize(asBytes(b)));
  }
}

class KyberPreKeys extends KyberPreKeyStore {
  constructor(private readonly view: StateView) {
    super();
  }
  saveKyberPreKey(id: number, record: KyberPreKeyRecord) {
    this.view.setKyberPreKey(id, { record: record.serialize(), lastResort: false });
    return Promise.resolve();
  }
  getKyberPreKey(id: number) {
    const k = this.view.getKyberPreKey(id);
    if (!k) return Promise.reject(new CoreError("InvalidKey", "unknown Kyber prekey"));
    return Promise.resolve(KyberPreKeyRecord.deserialize(asBytes(k.record)));
  }
  // One-time Kyber prekeys are deleted on use; the last-resort one stays until rotation.
  markKyberPreKeyUsed(id: number, _signedPreKeyId: number, _baseKey: PublicKey) {
    const k = this.view.getKyberPreKey(id);
    if (k && !k.lastResort) this.view.setKyberPreKey(id, null);
    return Promise.resolve();
  }
}

class SenderKeys extends SenderKeyStore {
  constructor(private readonly view: StateView) {
    super();
  }
  saveSenderKey(sender: ProtocolAddress, distributionId: string, record: SenderKeyRecord) {
    this.view.setSenderKey(addr(sender), distributionId, record.serialize());
    return Promise.resolve();
  }
  getSenderKey(sender: ProtocolAddress, distributionId: string) {
    const b = this.view.getSenderKey(addr(sender), distributionId);
    return Promise.resolve(b ? SenderKeyRecord.deserialize(asBytes(b)) : null);
  }
}

/**
 * libsignal's six store interfaces over one {@link StateView}. Bound to a transaction, every
 * session, identity and prekey change libsignal makes during one operation lands in that
 * transaction and commits with it.
 */
export class LibsignalStores {
  readonly session: SessionStore;
  readonly identity: IdentityKeyStore;
  readonly preKey: PreKeyStore;
  readonly signedPreKey: SignedPreKeyStore;
  readonly kyberPreKey: KyberPreKeyStore;
  readonly senderKey: SenderKeyStore;

  constructor(view: StateView, local: Local) {
    this.session = new Sessions(view);
    this.identity = new Identities(view, local);
    this.preKey = new PreKeys(view);
    this.signedPreKey = new SignedPreKeys(view);
    this.kyberPreKey = new KyberPreKeys(view);
    this.senderKey = new SenderKeys(view);
  }
}

/** Restores a libsignal identity key pair from stored bytes. */
export function identityFromBytes(bytes: Uint8Array): IdentityKeyPair {
  return IdentityKeyPair.deserialize(toBytes(bytes));
}

/** Restores a libsignal private key from its 32 stored bytes. */
export function privateKeyFromBytes(bytes: Uint8Array): PrivateKey {
  return PrivateKey.deserialize(toBytes(bytes));
}
