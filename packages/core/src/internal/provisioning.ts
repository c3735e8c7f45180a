import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { PrivateKey, PublicKey } from "@signalapp/libsignal-client";
import { ProvisioningEnvelopeSchema, ProvisioningMessageSchema } from "../gen/pairwise_pb.ts";
import { isValidAccountId } from "./adv.ts";
import { concatBytes, toBytes, utf8 } from "./bytes.ts";
import { CoreError, type CoreErrorCode } from "./errors.ts";
import { decodeProto, encodeProto } from "./proto.ts";

/** The only provisioning envelope version. */
export const PROVISIONING_VERSION = 1;

/** HKDF-SHA256 `info` for the provisioning key. */
export const PROVISIONING_INFO = "Pairwise Provisioning v1";

/** Largest provisioning envelope {@link openProvisioningEnvelope} decodes. */
export const MAX_PROVISIONING_ENVELOPE_BYTES = 64 * 1024;

const X25519_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const MAX_PRIMARY_NAME_CHARS = 64;
const MAX_SIGNED_DEVICE_IDENTITY_BYTES = 4 * 1024;
const MAX_SIGNED_DEVICE_LIST_BYTES = 16 * 1024;

/** What the primary tells a new companion (the `ProvisioningMessage` protobuf, validated). */
export interface ProvisioningPayload {
  /** The account's id, as ADV allows it (`ACCOUNT_ID_PATTERN`: `[a-z0-9._-]{1,64}`). */
  readonly accountId: string;
  /** The companion's device id, 2..127. */
  readonly deviceId: number;
  /** The account identity public key (ADV root), 33 bytes as libsignal serializes it. */
  readonly accountIdentityKey: Uint8Array;
  /** SignedDeviceIdentity bytes for the companion (1..4096 bytes, verified elsewhere). */
  readonly signedDeviceIdentity: Uint8Array;
  /** SignedDeviceList bytes naming the companion (1..16384 bytes, verified elsewhere). */
  readonly signedDeviceList: Uint8Array;
  /** The primary's display name, 0..64 characters. */
  readonly primaryName: string;
}

/** Options of {@link sealProvisioningMessage}. */
export interface SealProvisioningOptions {
  /** The companion's ephemeral X25519 public key from its link URI, 32 raw bytes. */
  readonly companionEphemeralPublic: Uint8Array;
  readonly message: ProvisioningPayload;
  /**
   * Random bytes; called first for the primary's 32-byte one-time private key, then for the
   * 12-byte nonce. Tests inject a deterministic one.
   */
  readonly random?: (length: number) => Uint8Array;
}

/** Options of {@link openProvisioningEnvelope}. */
export interface OpenProvisioningOptions {
  /** The companion's ephemeral X25519 private key, 32 bytes (`EphemeralLinkKeys.privateKey`). */
  readonly ephemeralPrivate: Uint8Array;
  /** ProvisioningEnvelope bytes as received. */
  readonly envelope: Uint8Array;
}

function checkPayload(m: ProvisioningPayload, code: CoreErrorCode): void {
  if (!isValidAccountId(m.accountId)) throw new CoreError(code, "account id is invalid");
  if (!Number.isInteger(m.deviceId) || m.deviceId < 2 || m.deviceId > 127) {
    throw new CoreError(code, "companion device id must be 2..127");
  }
  if (!isPublicKey(m.accountIdentityKey))
    throw new CoreError(code, "account identity key is not a public key");
  if (
    m.signedDeviceIdentity.length < 1 ||
    m.signedDeviceIdentity.length > MAX_SIGNED_DEVICE_IDENTITY_BYTES
  ) {
    throw new CoreError(code, "signed device identity has a bad size");
  }
  if (m.signedDeviceList.length < 1 || m.signedDeviceList.length > MAX_SIGNED_DEVICE_LIST_BYTES) {
    throw new CoreError(code, "signed device list has a bad size");
  }
  if (m.primaryName.length > MAX_PRIMARY_NAME_CHARS)
    throw new CoreError(code, "primary name is too long");
}

function isPublicKey(bytes: Uint8Array): boolean {
  if (bytes.length !== 33 || bytes[0] !== 0x05) return false;
  try {
    PublicKey.deserialize(toBytes(bytes));
    return true;
  } catch {
    return false;
  }
}

/** X25519 on libsignal keys; null when libsignal refuses the agreement (low-order point). */
function agree(privateKey: PrivateKey, rawPublic: Uint8Array): Uint8Array<ArrayBuffer> | null {
  try {
    return privateKey.agree(PublicKey.deserialize(concatBytes(Uint8Array.of(0x05), rawPublic)));
  } catch {
    return null;
  }
}

/** salt = primary ephemeral public || companion ephemeral public; AAD = version byte || primary public. */
function keyAndAad(
  shared: Uint8Array,
  primaryPublic: Uint8Array,
  companionPublic: Uint8Array,
): { key: Buffer; aad: Uint8Array } {
  const salt = concatBytes(primaryPublic, companionPublic);
  const key = Buffer.from(hkdfSync("sha256", shared, salt, utf8(PROVISIONING_INFO), 32));
  return { key, aad: concatBytes(Uint8Array.of(PROVISIONING_VERSION), primaryPublic) };
}

function randomOf(
  random: ((n: number) => Uint8Array) | undefined,
  length: number,
): Uint8Array<ArrayBuffer> {
  const bytes = random === undefined ? randomBytes(length) : random(length);
  if (bytes.length !== length)
    throw new CoreError("InvalidArgument", "random source returned the wrong length");
  return toBytes(bytes);
}

/**
 * Seals a provisioning message to a companion's ephemeral key (from its link URI): a one-time
 * X25519 key, HKDF-SHA256 (salt = primary public ‖ companion public, info
 * {@link PROVISIONING_INFO}), AES-256-GCM with a random 12-byte nonce prepended and AAD =
 * version byte ‖ primary public. Returns ProvisioningEnvelope bytes.
 *
 * @throws CoreError "InvalidKey" when the companion key is not 32 bytes or is refused by X25519,
 *   "InvalidArgument" when a message field is out of range.
 */
export function sealProvisioningMessage(options: SealProvisioningOptions): Uint8Array<ArrayBuffer> {
  const { companionEphemeralPublic: companionPublic, message } = options;
  if (companionPublic.length !== X25519_BYTES)
    throw new CoreError("InvalidKey", "companion key must be 32 bytes");
  checkPayload(message, "InvalidArgument");

  const ephemeral = PrivateKey.deserialize(randomOf(options.random, X25519_BYTES));
  const primaryPublic = ephemeral.getPublicKey().serialize().subarray(1);
  const shared = agree(ephemeral, companionPublic);
  if (shared === null) throw new CoreError("InvalidKey", "companion key is refused by X25519");
  const { key, aad } = keyAndAad(shared, primaryPublic, companionPublic);

  const plaintext = encodeProto(
    ProvisioningMessageSchema,
    create(ProvisioningMessageSchema, {
      accountId: message.accountId,
      deviceId: message.deviceId,
      accountIdentityKey: message.accountIdentityKey,
      signedDeviceIdentity: message.signedDeviceIdentity,
      signedDeviceList: message.signedDeviceList,
      primaryName: message.primaryName,
    }),
  );
  const nonce = randomOf(options.random, NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(aad);
  const body = concatBytes(cipher.update(plaintext), cipher.final(), cipher.getAuthTag());

  return encodeProto(
    ProvisioningEnvelopeSchema,
    create(ProvisioningEnvelopeSchema, {
      version: PROVISIONING_VERSION,
      ephemeralPublic: toBytes(primaryPublic),
      ciphertext: concatBytes(nonce, body),
    }),
  );
}

/**
 * Opens a ProvisioningEnvelope with the companion's ephemeral private key and returns the
 * validated provisioning message. Signatures inside it are not checked here.
 *
 * @throws CoreError "InvalidArgument" when `ephemeralPrivate` is not 32 bytes, "InputTooLarge"
 *   past {@link MAX_PROVISIONING_ENVELOPE_BYTES}, "MalformedInput" for a bad envelope or message,
 *   "DecryptionFailed" when authentication fails (wrong key or tampered bytes).
 */
export function openProvisioningEnvelope(options: OpenProvisioningOptions): ProvisioningPayload & {
  readonly accountIdentityKey: Uint8Array<ArrayBuffer>;
  readonly signedDeviceIdentity: Uint8Array<ArrayBuffer>;
  readonly signedDeviceList: Uint8Array<ArrayBuffer>;
} {
  if (options.ephemeralPrivate.length !== X25519_BYTES) {
    throw new CoreError("InvalidArgument", "ephemeral private key must be 32 bytes");
  }
  const envelope = decodeProto(
    ProvisioningEnvelopeSchema,
    options.envelope,
    "provisioning envelope",
    MAX_PROVISIONING_ENVELOPE_BYTES,
  );
  if (envelope.version !== PROVISIONING_VERSION) {
    throw new CoreError("MalformedInput", "unsupported provisioning envelope version");
  }
  if (envelope.ephemeralPublic.length !== X25519_BYTES) {
    throw new CoreError("MalformedInput", "provisioning ephemeral key must be 32 bytes");
  }
  if (envelope.ciphertext.length < NONCE_BYTES + TAG_BYTES) {
    throw new CoreError("MalformedInput", "provisioning ciphertext is too short");
  }

  const companion = PrivateKey.deserialize(toBytes(options.ephemeralPrivate));
  const companionPublic = companion.getPublicKey().serialize().subarray(1);
  const shared = agree(companion, envelope.ephemeralPublic);
  if (shared === null)
    throw new CoreError("MalformedInput", "provisioning ephemeral key is refused by X25519");
  const { key, aad } = keyAndAad(shared, envelope.ephemeralPublic, companionPublic);

  const data = envelope.ciphertext;
  let plaintext: Uint8Array;
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, data.subarray(0, NONCE_BYTES));
    decipher.setAAD(aad);
    decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
    plaintext = concatBytes(
      decipher.update(data.subarray(NONCE_BYTES, data.length - TAG_BYTES)),
      decipher.final(),
    );
  } catch {
    throw new CoreError("DecryptionFailed", "provisioning envelope does not authenticate");
  }

  const m = decodeProto(ProvisioningMessageSchema, plaintext, "provisioning message");
  const payload = {
    accountId: m.accountId,
    deviceId: m.deviceId,
    accountIdentityKey: toBytes(m.accountIdentityKey),
    signedDeviceIdentity: toBytes(m.signedDeviceIdentity),
    signedDeviceList: toBytes(m.signedDeviceList),
    primaryName: m.primaryName,
  };
  checkPayload(payload, "MalformedInput");
  return payload;
}
