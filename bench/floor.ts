// The shared floor of the benchmarks (raw libsignal, in-memory stores).
import type { PublicKey } from "@signalapp/libsignal-client";
import {
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KEMKeyPair,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyBundle,
  PreKeyRecord,
  PreKeyStore,
  PrivateKey,
  ProtocolAddress,
  PreKeySignalMessage,
  SessionRecord,
  SessionStore,
  SignalMessage,
  SignedPreKeyRecord,
  SignedPreKeyStore,
  CiphertextMessageType,
  type CiphertextMessage,
  processPreKeyBundle,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
} from "@signalapp/libsignal-client";

const plaintext = new Uint8Array(160).fill(42);

class MemSessions extends SessionStore {
  m = new Map<string, Uint8Array<ArrayBuffer>>();
  saveSession(a: ProtocolAddress, r: SessionRecord) {
    this.m.set(a.toString(), r.serialize());
    return Promise.resolve();
  }
  getSession(a: ProtocolAddress) {
    const b = this.m.get(a.toString());
    return Promise.resolve(b ? SessionRecord.deserialize(b) : null);
  }
  getExistingSessions(as: ProtocolAddress[]) {
    return Promise.resolve(as.map((a) => SessionRecord.deserialize(this.m.get(a.toString())!)));
  }
}
class MemIdentity extends IdentityKeyStore {
  m = new Map<string, PublicKey>();
  constructor(private readonly pair: IdentityKeyPair) {
    super();
  }
  getIdentityKey() {
    return Promise.resolve(this.pair.privateKey);
  }
  getLocalRegistrationId() {
    return Promise.resolve(1);
  }
  saveIdentity(a: ProtocolAddress, k: PublicKey) {
    this.m.set(a.toString(), k);
    return Promise.resolve(IdentityChange.NewOrUnchanged);
  }
  isTrustedIdentity() {
    return Promise.resolve(true);
  }
  getIdentity(a: ProtocolAddress) {
    return Promise.resolve(this.m.get(a.toString()) ?? null);
  }
}
class MemPreKeys extends PreKeyStore {
  m = new Map<number, PreKeyRecord>();
  savePreKey(id: number, r: PreKeyRecord) {
    this.m.set(id, r);
    return Promise.resolve();
  }
  getPreKey(id: number) {
    return Promise.resolve(this.m.get(id)!);
  }
  removePreKey(id: number) {
    this.m.delete(id);
    return Promise.resolve();
  }
}
class MemSigned extends SignedPreKeyStore {
  m = new Map<number, SignedPreKeyRecord>();
  saveSignedPreKey(id: number, r: SignedPreKeyRecord) {
    this.m.set(id, r);
    return Promise.resolve();
  }
  getSignedPreKey(id: number) {
    return Promise.resolve(this.m.get(id)!);
  }
}
class MemKyber extends KyberPreKeyStore {
  m = new Map<number, KyberPreKeyRecord>();
  saveKyberPreKey(id: number, r: KyberPreKeyRecord) {
    this.m.set(id, r);
    return Promise.resolve();
  }
  getKyberPreKey(id: number) {
    return Promise.resolve(this.m.get(id)!);
  }
  markKyberPreKeyUsed() {
    return Promise.resolve();
  }
}

type Party = ReturnType<typeof party>;

function party(name: string) {
  const pair = IdentityKeyPair.generate();
  return {
    address: ProtocolAddress.new(name, 1),
    pair,
    sessions: new MemSessions(),
    identity: new MemIdentity(pair),
    preKeys: new MemPreKeys(),
    signed: new MemSigned(),
    kyber: new MemKyber(),
  };
}

const encrypt = (from: Party, to: Party) =>
  signalEncrypt(plaintext, to.address, from.address, from.sessions, from.identity);

const decrypt = (from: Party, to: Party, ct: CiphertextMessage) =>
  signalDecrypt(
    SignalMessage.deserialize(ct.serialize()),
    from.address,
    to.address,
    to.sessions,
    to.identity,
  );

/** A's session with B from B's prekey bundle (PQXDH), answered once so both sides hold it. */
async function establish(a: Party, b: Party): Promise<void> {
  const pre = PrivateKey.generate();
  const spk = PrivateKey.generate();
  const kem = KEMKeyPair.generate();
  const spkSig = b.pair.privateKey.sign(spk.getPublicKey().serialize());
  const kemSig = b.pair.privateKey.sign(kem.getPublicKey().serialize());
  await b.preKeys.savePreKey(1, PreKeyRecord.new(1, pre.getPublicKey(), pre));
  await b.signed.saveSignedPreKey(
    1,
    SignedPreKeyRecord.new(1, Date.now(), spk.getPublicKey(), spk, spkSig),
  );
  await b.kyber.saveKyberPreKey(1, KyberPreKeyRecord.new(1, Date.now(), kem, kemSig));
  const bundle = PreKeyBundle.new(
    1,
    1,
    1,
    pre.getPublicKey(),
    1,
    spk.getPublicKey(),
    spkSig,
    b.pair.publicKey,
    1,
    kem.getPublicKey(),
    kemSig,
  );
  await processPreKeyBundle(bundle, b.address, a.address, a.sessions, a.identity);
  const first = await encrypt(a, b);
  await signalDecryptPreKey(
    PreKeySignalMessage.deserialize(first.serialize()),
    a.address,
    b.address,
    b.sessions,
    b.identity,
    b.preKeys,
    b.signed,
    b.kyber,
  );
  await decrypt(b, a, await encrypt(b, a));
}

/**
 * The floor every messaging benchmark compares against: raw libsignal with plain in-memory
 * stores, an established session, one 160-byte message encrypted and decrypted per call.
 */
export async function rawFloor(): Promise<() => Promise<void>> {
  const a = party("alice");
  const b = party("bob");
  await establish(a, b);
  return async () => {
    const ct = await encrypt(a, b);
    if (ct.type() !== (CiphertextMessageType.Whisper as number))
      throw new Error("expected an established session");
    await decrypt(a, b, ct);
  };
}

/**
 * What one echo of the bot-host benchmark costs in libsignal alone (same in-memory stores as
 * {@link rawFloor}): the customer encrypts to the bot and to the business account's primary, the
 * bot decrypts and encrypts its answer to the customer and to that primary, the customer
 * decrypts. Messages alternate direction, so each decrypt takes a ratchet step (rawFloor's,
 * always one way, never does); the primary is offline and only ever receives.
 */
export async function echoCrypto(): Promise<() => Promise<void>> {
  const customer = party("customer");
  const bot = party("bot");
  const primary = party("primary");
  await establish(customer, bot);
  await establish(customer, primary);
  await establish(bot, primary);
  return async () => {
    const ask = await encrypt(customer, bot);
    await encrypt(customer, primary);
    await decrypt(customer, bot, ask);
    const answer = await encrypt(bot, customer);
    await encrypt(bot, primary);
    await decrypt(bot, customer, answer);
  };
}
