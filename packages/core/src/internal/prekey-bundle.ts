import { KEMPublicKey, PreKeyBundle, PublicKey } from "@signalapp/libsignal-client";
import { create } from "@bufbuild/protobuf";
import { PreKeyBundleMessageSchema } from "../gen/pairwise_pb.ts";
import { toBytes } from "./bytes.ts";
import { CoreError } from "./errors.ts";
import type { PublicPreKey, PublicSignedPreKey } from "./keys.ts";
import { decodeProto, encodeProto } from "./proto.ts";

/** What a server hands out to start a session with one device (PQXDH: EC + Kyber prekeys). */
export interface PreKeyBundleInfo {
  registrationId: number;
  deviceId: number;
  identityKey: Uint8Array;
  /** A one-time EC prekey, when the server still had one. */
  preKey?: PublicPreKey;
  signedPreKey: PublicSignedPreKey;
  /** A one-time Kyber prekey, or the last-resort one. */
  kyberPreKey: PublicSignedPreKey;
}

/** Encodes a bundle as `PreKeyBundleMessage` protobuf bytes (the server's answer format). */
export function encodePreKeyBundle(info: PreKeyBundleInfo): Uint8Array {
  return encodeProto(
    PreKeyBundleMessageSchema,
    create(PreKeyBundleMessageSchema, {
      registrationId: info.registrationId,
      deviceId: info.deviceId,
      identityKey: info.identityKey,
      prekeyId: info.preKey?.id ?? 0,
      prekey: info.preKey?.publicKey ?? new Uint8Array(0),
      signedPrekeyId: info.signedPreKey.id,
      signedPrekey: info.signedPreKey.publicKey,
      signedPrekeySignature: info.signedPreKey.signature,
      kyberPrekeyId: info.kyberPreKey.id,
      kyberPrekey: info.kyberPreKey.publicKey,
      kyberPrekeySignature: info.kyberPreKey.signature,
    }),
  );
}

/**
 * Decodes `PreKeyBundleMessage` bytes into a libsignal `PreKeyBundle`, checking every field's
 * shape and both prekey signatures against the bundle's identity key. Throws
 * `CoreError("MalformedInput")` for bad shapes, `"BadSignature"` for a prekey not signed by the
 * identity key.
 */
export function decodePreKeyBundle(bytes: Uint8Array): {
  bundle: PreKeyBundle;
  info: PreKeyBundleInfo;
} {
  const m = decodeProto(PreKeyBundleMessageSchema, bytes, "prekey bundle", 8 * 1024);
  const fail = (what: string): never => {
    throw new CoreError("MalformedInput", `prekey bundle: ${what}`);
  };
  if (m.deviceId < 1 || m.deviceId > 127) fail("device id out of range");
  if (m.registrationId < 1 || m.registrationId > 0x3fff) fail("registration id out of range");
  if (m.identityKey.length !== 33 || m.signedPrekey.length !== 33)
    fail("EC key has the wrong length");
  if (m.signedPrekeySignature.length !== 64 || m.kyberPrekeySignature.length !== 64)
    fail("signature has the wrong length");
  const hasPreKey = m.prekeyId !== 0;
  if (hasPreKey !== m.prekey.length > 0 || (hasPreKey && m.prekey.length !== 33))
    fail("one-time prekey is malformed");
  let identity: PublicKey, signed: PublicKey, kyber: KEMPublicKey, pre: PublicKey | null;
  try {
    identity = PublicKey.deserialize(toBytes(m.identityKey));
    signed = PublicKey.deserialize(toBytes(m.signedPrekey));
    kyber = KEMPublicKey.deserialize(toBytes(m.kyberPrekey));
    pre = hasPreKey ? PublicKey.deserialize(toBytes(m.prekey)) : null;
  } catch (cause) {
    throw new CoreError("MalformedInput", "prekey bundle: a key does not decode", { cause });
  }
  if (!identity.verify(toBytes(m.signedPrekey), toBytes(m.signedPrekeySignature))) {
    throw new CoreError("BadSignature", "signed prekey is not signed by the device identity key");
  }
  if (!identity.verify(toBytes(m.kyberPrekey), toBytes(m.kyberPrekeySignature))) {
    throw new CoreError("BadSignature", "Kyber prekey is not signed by the device identity key");
  }
  const bundle = PreKeyBundle.new(
    m.registrationId,
    m.deviceId,
    hasPreKey ? m.prekeyId : null,
    pre,
    m.signedPrekeyId,
    signed,
    toBytes(m.signedPrekeySignature),
    identity,
    m.kyberPrekeyId,
    kyber,
    toBytes(m.kyberPrekeySignature),
  );
  const info: PreKeyBundleInfo = {
    registrationId: m.registrationId,
    deviceId: m.deviceId,
    identityKey: m.identityKey,
    signedPreKey: {
      id: m.signedPrekeyId,
      publicKey: m.signedPrekey,
      signature: m.signedPrekeySignature,
    },
    kyberPreKey: {
      id: m.kyberPrekeyId,
      publicKey: m.kyberPrekey,
      signature: m.kyberPrekeySignature,
    },
  };
  if (hasPreKey) info.preKey = { id: m.prekeyId, publicKey: m.prekey };
  return { bundle, info };
}
