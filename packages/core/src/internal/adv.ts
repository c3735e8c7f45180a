import { create } from "@bufbuild/protobuf";
import type { PrivateKey, PublicKey } from "@signalapp/libsignal-client";
import { DeviceIdentitySchema, SignedDeviceIdentitySchema } from "../gen/pairwise_pb.ts";
import { bytesEqual, concatBytes, toBytes } from "./bytes.ts";
import { CoreError, type CoreErrorCode } from "./errors.ts";
import { LINK_SECRET_BYTES, computeLinkHmac, verifyLinkHmac } from "./link-uri.ts";
import { decodeProto, encodeProto } from "./proto.ts";

/**
 * Account ids: 1..64 characters of `[a-z0-9._-]`. Lower case only, so two ids that look alike are
 * equal, and nothing in them needs escaping in a URI, a file name or a log line.
 */
export const ACCOUNT_ID_PATTERN = /^[a-z0-9._-]{1,64}$/;
/** The primary's device id; it always has key index 0. */
export const PRIMARY_DEVICE_ID = 1;
/** Highest device id libsignal accepts; companions are 2..127. */
export const MAX_DEVICE_ID = 127;

const MAX_KEY_INDEX = 0xffff_ffff; // uint32 on the wire
const SIGNATURE_BYTES = 64;
const HMAC_BYTES = 32;
/** A SignedDeviceIdentity is ~300 bytes; anything much larger is not one. */
const MAX_SIGNED_IDENTITY_BYTES = 1024;
const ACCOUNT_SIGNATURE_PREFIX = Uint8Array.of(0x06, 0x00);
const DEVICE_SIGNATURE_PREFIX = Uint8Array.of(0x06, 0x01);

/** Who a device is within its account, as the account key vouches for it (PROTOCOL.md "ADV"). */
export interface DeviceIdentityInfo {
  /** See {@link ACCOUNT_ID_PATTERN}. */
  readonly accountId: string;
  /** 1 = primary, 2..127 companions. */
  readonly deviceId: number;
  /** 0 for the primary (device 1), >= 1 for companions; counts linkings monotonically. */
  readonly keyIndex: number;
  /** Milliseconds since the epoch, a non-negative safe integer. */
  readonly createdAt: number;
}

/** A SignedDeviceIdentity carrying both signatures, and what it says. */
export interface CompletedDeviceIdentity {
  /** SignedDeviceIdentity protobuf bytes, ready to publish. */
  readonly signed: Uint8Array<ArrayBuffer>;
  readonly info: DeviceIdentityInfo;
}

/** True when `value` is a valid account id ({@link ACCOUNT_ID_PATTERN}). */
export function isValidAccountId(value: unknown): value is string {
  return typeof value === "string" && ACCOUNT_ID_PATTERN.test(value);
}

function isUint(value: number, max: number): boolean {
  return Number.isSafeInteger(value) && value >= 0 && value <= max;
}

/** The fixed description of what is wrong with `info`, or undefined when it is valid. */
function identityProblem(info: DeviceIdentityInfo): string | undefined {
  if (!isValidAccountId(info.accountId)) return "account id is invalid";
  if (!isUint(info.deviceId, MAX_DEVICE_ID) || info.deviceId < PRIMARY_DEVICE_ID) {
    return "device id must be 1..127";
  }
  if (!isUint(info.keyIndex, MAX_KEY_INDEX)) return "key index is invalid";
  if ((info.deviceId === PRIMARY_DEVICE_ID) !== (info.keyIndex === 0)) {
    return "key index must be 0 exactly for device 1";
  }
  if (!isUint(info.createdAt, Number.MAX_SAFE_INTEGER)) return "created-at is invalid";
  return undefined;
}

function encodeDetails(info: DeviceIdentityInfo): Uint8Array<ArrayBuffer> {
  const problem = identityProblem(info);
  if (problem !== undefined) throw new CoreError("InvalidArgument", problem);
  return encodeProto(
    DeviceIdentitySchema,
    create(DeviceIdentitySchema, {
      accountId: info.accountId,
      deviceId: info.deviceId,
      keyIndex: info.keyIndex,
      createdAt: BigInt(info.createdAt),
    }),
  );
}

/** Parses signed DeviceIdentity bytes; only the canonical encoding is accepted. */
function decodeDetails(details: Uint8Array): DeviceIdentityInfo {
  const message = decodeProto(DeviceIdentitySchema, details, "device identity");
  if (message.createdAt > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new CoreError("MalformedInput", "device identity created-at is out of range");
  }
  const info: DeviceIdentityInfo = {
    accountId: message.accountId,
    deviceId: message.deviceId,
    keyIndex: message.keyIndex,
    createdAt: Number(message.createdAt),
  };
  const problem = identityProblem(info);
  if (problem !== undefined) throw new CoreError("MalformedInput", `device identity ${problem}`);
  // Unknown fields, repeats or odd varints would all re-encode differently: reject them so every
  // reader of the signed bytes sees the same identity.
  if (!bytesEqual(encodeDetails(info), details)) {
    throw new CoreError("MalformedInput", "device identity is not canonically encoded");
  }
  return info;
}

/**
 * The bytes the account key signs for a device: `0x06 0x00 || details || device identity public
 * key` (33-byte serialized form). Does not throw.
 */
export function accountSignatureInput(
  details: Uint8Array,
  deviceIdentityPublic: PublicKey,
): Uint8Array<ArrayBuffer> {
  return concatBytes(ACCOUNT_SIGNATURE_PREFIX, details, deviceIdentityPublic.serialize());
}

/**
 * The bytes a device signs to accept its identity: `0x06 0x01 || details || device identity
 * public key || account public key` (both 33-byte serialized form). Does not throw.
 */
export function deviceSignatureInput(
  details: Uint8Array,
  deviceIdentityPublic: PublicKey,
  accountPublic: PublicKey,
): Uint8Array<ArrayBuffer> {
  return concatBytes(
    DEVICE_SIGNATURE_PREFIX,
    details,
    deviceIdentityPublic.serialize(),
    accountPublic.serialize(),
  );
}

function verifies(
  key: PublicKey,
  message: Uint8Array<ArrayBuffer>,
  signature: Uint8Array,
): boolean {
  if (signature.length !== SIGNATURE_BYTES) return false;
  try {
    return key.verify(message, toBytes(signature));
  } catch {
    return false;
  }
}

function checkLinkSecret(linkSecret: Uint8Array): void {
  if (linkSecret.length !== LINK_SECRET_BYTES) {
    throw new CoreError("InvalidArgument", "link secret must be 32 bytes");
  }
}

function encodeSigned(parts: {
  details: Uint8Array;
  accountSignature: Uint8Array;
  deviceSignature?: Uint8Array;
  linkHmac?: Uint8Array;
}): Uint8Array<ArrayBuffer> {
  return encodeProto(SignedDeviceIdentitySchema, create(SignedDeviceIdentitySchema, parts));
}

/** Decodes the SignedDeviceIdentity envelope and checks its field sizes (not the signatures). */
function decodeSigned(bytes: Uint8Array) {
  const signed = decodeProto(
    SignedDeviceIdentitySchema,
    bytes,
    "signed device identity",
    MAX_SIGNED_IDENTITY_BYTES,
  );
  if (signed.accountSignature.length !== SIGNATURE_BYTES) {
    throw new CoreError("MalformedInput", "account signature has the wrong length");
  }
  if (signed.deviceSignature.length !== 0 && signed.deviceSignature.length !== SIGNATURE_BYTES) {
    throw new CoreError("MalformedInput", "device signature has the wrong length");
  }
  if (signed.linkHmac.length !== 0 && signed.linkHmac.length !== HMAC_BYTES) {
    throw new CoreError("MalformedInput", "link HMAC has the wrong length");
  }
  return signed;
}

type SignedIdentity = ReturnType<typeof decodeSigned>;

function accountSigned(signed: SignedIdentity, device: PublicKey, account: PublicKey): boolean {
  return verifies(account, accountSignatureInput(signed.details, device), signed.accountSignature);
}

const REFUSALS = {
  "bad-account-signature": ["BadSignature", "account signature does not verify"],
  "bad-device-signature": ["BadSignature", "device signature is missing or does not verify"],
  "wrong-account": ["UntrustedDevice", "device identity names another account"],
  "wrong-device-id": ["UntrustedDevice", "device identity names another device id"],
} as const satisfies Record<string, readonly [CoreErrorCode, string]>;
type Refusal = keyof typeof REFUSALS;

function refusal(reason: Refusal): CoreError {
  return new CoreError(REFUSALS[reason][0], REFUSALS[reason][1]);
}

function mismatch(
  info: DeviceIdentityInfo,
  expected: { readonly accountId?: string; readonly deviceId?: number },
): Refusal | undefined {
  if (expected.accountId !== undefined && info.accountId !== expected.accountId) {
    return "wrong-account";
  }
  if (expected.deviceId !== undefined && info.deviceId !== expected.deviceId) {
    return "wrong-device-id";
  }
  return undefined;
}

/**
 * Primary side of linking: signs a companion's identity with the account key. With `linkSecret`
 * (the 32 bytes from the companion's link URI) it adds `HMAC-SHA256(linkSecret, details)`, which
 * proves the primary saw the QR code. The result still lacks the companion's device signature:
 * send it to the companion, which completes it with {@link acceptDeviceIdentity}.
 *
 * Throws `CoreError("InvalidArgument")` for an invalid identity, a device id of 1 (use
 * {@link createPrimaryDeviceIdentity}) or a link secret that is not 32 bytes.
 */
export function signDeviceIdentity(options: {
  accountPrivate: PrivateKey;
  identity: DeviceIdentityInfo;
  deviceIdentityPublic: PublicKey;
  linkSecret?: Uint8Array;
}): Uint8Array<ArrayBuffer> {
  if (options.identity.deviceId === PRIMARY_DEVICE_ID) {
    throw new CoreError(
      "InvalidArgument",
      "device 1 signs itself with createPrimaryDeviceIdentity",
    );
  }
  if (options.linkSecret !== undefined) checkLinkSecret(options.linkSecret);
  const details = encodeDetails(options.identity);
  const accountSignature = options.accountPrivate.sign(
    accountSignatureInput(details, options.deviceIdentityPublic),
  );
  return encodeSigned({
    details,
    accountSignature,
    ...(options.linkSecret === undefined
      ? {}
      : { linkHmac: computeLinkHmac(options.linkSecret, details) }),
  });
}

/**
 * Companion side of linking: checks the identity the primary signed for this device (account
 * signature under `accountPublic`, link HMAC under `linkSecret` in constant time, the expected
 * account and device ids) and adds this device's own signature.
 *
 * Throws `CoreError`: "MalformedInput"/"InputTooLarge" for bad bytes (also when a device
 * signature is already present), "BadSignature" when the account signature or the link HMAC
 * does not verify, "UntrustedDevice" when the identity names the primary or another account or
 * device id than expected, "InvalidArgument" for a link secret that is not 32 bytes.
 */
export function acceptDeviceIdentity(options: {
  signed: Uint8Array;
  accountPublic: PublicKey;
  devicePrivate: PrivateKey;
  linkSecret: Uint8Array;
  expected?: { accountId?: string; deviceId?: number };
}): CompletedDeviceIdentity {
  checkLinkSecret(options.linkSecret);
  const signed = decodeSigned(options.signed);
  if (signed.deviceSignature.length !== 0) {
    throw new CoreError("MalformedInput", "device identity is already accepted");
  }
  const devicePublic = options.devicePrivate.getPublicKey();
  if (!accountSigned(signed, devicePublic, options.accountPublic)) {
    throw refusal("bad-account-signature");
  }
  if (!verifyLinkHmac(options.linkSecret, signed.details, signed.linkHmac)) {
    throw new CoreError("BadSignature", "link HMAC does not verify");
  }
  const info = decodeDetails(signed.details);
  if (info.deviceId === PRIMARY_DEVICE_ID) {
    throw new CoreError("UntrustedDevice", "a companion cannot be device 1");
  }
  const wrong = mismatch(info, options.expected ?? {});
  if (wrong !== undefined) throw refusal(wrong);
  const deviceSignature = options.devicePrivate.sign(
    deviceSignatureInput(signed.details, devicePublic, options.accountPublic),
  );
  return {
    signed: encodeSigned({
      details: signed.details,
      accountSignature: signed.accountSignature,
      deviceSignature,
      linkHmac: signed.linkHmac,
    }),
    info,
  };
}

/**
 * The primary's own SignedDeviceIdentity: device 1, key index 0, no link HMAC, signed by the
 * account key and by the primary's device identity key.
 *
 * Throws `CoreError("InvalidArgument")` for an invalid account id or `createdAt`.
 */
export function createPrimaryDeviceIdentity(options: {
  accountPrivate: PrivateKey;
  devicePrivate: PrivateKey;
  accountId: string;
  createdAt: number;
}): CompletedDeviceIdentity {
  const info: DeviceIdentityInfo = {
    accountId: options.accountId,
    deviceId: PRIMARY_DEVICE_ID,
    keyIndex: 0,
    createdAt: options.createdAt,
  };
  const details = encodeDetails(info);
  const devicePublic = options.devicePrivate.getPublicKey();
  const accountPublic = options.accountPrivate.getPublicKey();
  return {
    signed: encodeSigned({
      details,
      accountSignature: options.accountPrivate.sign(accountSignatureInput(details, devicePublic)),
      deviceSignature: options.devicePrivate.sign(
        deviceSignatureInput(details, devicePublic, accountPublic),
      ),
    }),
    info,
  };
}

/** Why {@link checkSignedDeviceIdentity} refused a device identity. */
export type DeviceIdentityRejection = "malformed" | Refusal;

/** What {@link checkSignedDeviceIdentity} found: the identity, or why it was refused. */
export type DeviceIdentityCheck =
  | { readonly ok: true; readonly info: DeviceIdentityInfo }
  | { readonly ok: false; readonly reason: DeviceIdentityRejection; readonly error: CoreError };

/** Options of {@link verifySignedDeviceIdentity} and {@link checkSignedDeviceIdentity}. */
export interface VerifyDeviceIdentityOptions {
  /** The account key the verifier has for this account (TOFU is the caller's job). */
  readonly accountPublic: PublicKey;
  /** The identity key the device uses for its sessions. */
  readonly deviceIdentityPublic: PublicKey;
  /** When given, the identity must name this account. */
  readonly accountId?: string;
  /** When given, the identity must name this device id. */
  readonly deviceId?: number;
}

/** Signatures first, so only bytes the account key signed reach the DeviceIdentity decoder. */
function inspect(
  bytes: Uint8Array,
  options: VerifyDeviceIdentityOptions,
): DeviceIdentityInfo | Refusal {
  const signed = decodeSigned(bytes);
  const device = options.deviceIdentityPublic;
  if (!accountSigned(signed, device, options.accountPublic)) return "bad-account-signature";
  const input = deviceSignatureInput(signed.details, device, options.accountPublic);
  if (!verifies(device, input, signed.deviceSignature)) return "bad-device-signature";
  const info = decodeDetails(signed.details);
  return mismatch(info, options) ?? info;
}

/**
 * {@link verifySignedDeviceIdentity} without throwing: returns the identity, or the reason and
 * the error that verification would throw. Does not throw.
 */
export function checkSignedDeviceIdentity(
  bytes: Uint8Array,
  options: VerifyDeviceIdentityOptions,
): DeviceIdentityCheck {
  let result: DeviceIdentityInfo | Refusal;
  try {
    result = inspect(bytes, options);
  } catch (err) {
    if (CoreError.is(err)) return { ok: false, reason: "malformed", error: err };
    throw err;
  }
  return typeof result === "string"
    ? { ok: false, reason: result, error: refusal(result) }
    : { ok: true, info: result };
}

/**
 * Verifies a published SignedDeviceIdentity: the account signature under `accountPublic`, the
 * device signature (required) under `deviceIdentityPublic`, and the account and device ids when
 * given. The link HMAC is not checked: only the companion knows the link secret.
 *
 * Throws `CoreError`: "MalformedInput"/"InputTooLarge" for bad bytes, "BadSignature" when a
 * signature is missing or does not verify, "UntrustedDevice" for another account or device id.
 */
export function verifySignedDeviceIdentity(
  bytes: Uint8Array,
  options: VerifyDeviceIdentityOptions,
): DeviceIdentityInfo {
  const result = checkSignedDeviceIdentity(bytes, options);
  if (!result.ok) throw result.error;
  return result.info;
}
