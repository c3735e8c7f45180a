import { isValidAccountId } from "@pairwise/core";
import type {
  DeviceKeys,
  SignedPreKey as WireSignedPreKey,
  OneTimePreKey as WireOneTimePreKey,
} from "@pairwise/core/relay-proto";
import { ServerError } from "./errors.ts";
import type {
  NewDevice,
  OneTimePreKeyRecord,
  PreKeyUpload,
  SignedPreKeyRecord,
} from "./store/server-store.ts";

/** Limits on what one request may carry: checked before anything touches storage. */
export const LIMITS = {
  maxPreKeysPerUpload: 200,
  maxCopiesPerMessage: 1024,
  maxCiphertextBytes: 256 * 1024,
  maxMessageIdLength: 128,
  maxGroupMembers: 1024,
  maxNameLength: 64,
  maxSignedBlobBytes: 4096,
  maxBlobChunkBytes: 1024 * 1024,
} as const;

const EC_KEY = 33;
const SIGNATURE = 64;

/** Throws `ServerError("InvalidRequest")` with a fixed description when `ok` is false. */
export function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new ServerError("InvalidRequest", what);
}

export function checkAccountId(id: string): string {
  check(isValidAccountId(id), "account id is not valid");
  return id;
}

export function checkDeviceId(id: number): number {
  check(Number.isInteger(id) && id >= 1 && id <= 127, "device id out of range");
  return id;
}

export function checkMessageId(id: string): string {
  check(
    id.length > 0 && id.length <= LIMITS.maxMessageIdLength && /^[\x21-\x7e]+$/.test(id),
    "message id is not valid",
  );
  return id;
}

export function checkText(text: string, what: string, max: number = LIMITS.maxNameLength): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what we refuse
  check(text.length <= max && !/[\u0000-\u001f]/.test(text), `${what} is not valid`);
  return text;
}

function signedPreKey(
  k: WireSignedPreKey | undefined,
  what: string,
  keyLength?: number,
): SignedPreKeyRecord {
  check(k !== undefined, `${what} missing`);
  check(k.id >= 1 && k.id <= 0xffffff, `${what} id out of range`);
  check(
    keyLength === undefined
      ? k.publicKey.length > 0 && k.publicKey.length <= 2048
      : k.publicKey.length === keyLength,
    `${what} key has the wrong length`,
  );
  check(k.signature.length === SIGNATURE, `${what} signature has the wrong length`);
  return { id: k.id, publicKey: k.publicKey, signature: k.signature };
}

function oneTimePreKey(k: WireOneTimePreKey): OneTimePreKeyRecord {
  check(k.id >= 1 && k.id <= 0xffffff, "prekey id out of range");
  check(k.publicKey.length === EC_KEY, "prekey has the wrong length");
  return { id: k.id, publicKey: k.publicKey };
}

/** Validates an upload of prekeys (shapes and counts, not signatures: see `verifyPreKeySignatures`). */
export function checkPreKeyUpload(input: {
  signedPrekey?: WireSignedPreKey | undefined;
  lastResortKyberPrekey?: WireSignedPreKey | undefined;
  prekeys: WireOneTimePreKey[];
  kyberPrekeys: WireSignedPreKey[];
}): PreKeyUpload {
  check(
    input.prekeys.length <= LIMITS.maxPreKeysPerUpload &&
      input.kyberPrekeys.length <= LIMITS.maxPreKeysPerUpload,
    "too many prekeys",
  );
  const upload: PreKeyUpload = {
    preKeys: input.prekeys.map(oneTimePreKey),
    kyberPreKeys: input.kyberPrekeys.map((k) => signedPreKey(k, "Kyber prekey")),
  };
  if (input.signedPrekey)
    upload.signedPreKey = signedPreKey(input.signedPrekey, "signed prekey", EC_KEY);
  if (input.lastResortKyberPrekey)
    upload.lastResortKyberPreKey = signedPreKey(
      input.lastResortKyberPrekey,
      "last-resort Kyber prekey",
    );
  const ids = new Set(upload.preKeys.map((k) => k.id));
  check(ids.size === upload.preKeys.length, "duplicate prekey ids");
  return upload;
}

/** Validates a device's keys for registration; the caller verifies signatures. */
export function checkDeviceKeys(
  keys: DeviceKeys | undefined,
  placement: { deviceId: number; keyIndex: number; noiseKey: Uint8Array },
): NewDevice {
  check(keys !== undefined, "device keys missing");
  check(keys.registrationId >= 1 && keys.registrationId <= 0x3fff, "registration id out of range");
  check(keys.identityKey.length === EC_KEY, "identity key has the wrong length");
  check(
    keys.signedDeviceIdentity.length > 0 &&
      keys.signedDeviceIdentity.length <= LIMITS.maxSignedBlobBytes,
    "signed device identity has the wrong length",
  );
  const upload = checkPreKeyUpload(keys);
  check(
    upload.signedPreKey !== undefined && upload.lastResortKyberPreKey !== undefined,
    "signed and last-resort prekeys are required",
  );
  return {
    deviceId: placement.deviceId,
    keyIndex: placement.keyIndex,
    registrationId: keys.registrationId,
    identityKey: keys.identityKey,
    signedDeviceIdentity: keys.signedDeviceIdentity,
    noiseKey: placement.noiseKey,
    name: checkText(keys.name, "device name"),
    platform: checkText(keys.platform, "platform"),
    keys: {
      ...upload,
      signedPreKey: upload.signedPreKey,
      lastResortKyberPreKey: upload.lastResortKyberPreKey,
    },
  };
}

/** True when an account id names a user of another provider (`name@provider`). */
export function isRemoteId(id: string): boolean {
  return id.includes("@");
}
