/**
 * Writes provisioning.json, once: a provisioning envelope sealed from fixed keys and a fixed
 * nonce, plus the intermediate values (shared secret, AES key) computed here with node:crypto
 * from the documented layout. Run from packages/core: `npx tsx test/vectors/generate-provisioning.ts`.
 */
import { createHash, hkdfSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import { PrivateKey, PublicKey } from "@signalapp/libsignal-client";
import { concatBytes, toHex, utf8 } from "../../src/internal/bytes.ts";
import { PROVISIONING_INFO, sealProvisioningMessage } from "../../src/internal/provisioning.ts";

function bytes(label: string, length: number): Uint8Array<ArrayBuffer> {
  const digest = createHash("sha256").update(`pairwise provisioning vector ${label}`).digest();
  return new Uint8Array(digest.subarray(0, length));
}

const companionPrivate = PrivateKey.deserialize(bytes("companion ephemeral", 32));
const companionPublic = companionPrivate.getPublicKey().serialize().subarray(1);
const primaryPrivate = PrivateKey.deserialize(bytes("primary ephemeral", 32));
const primaryPublic = primaryPrivate.getPublicKey().serialize().subarray(1);
const nonce = bytes("nonce", 12);
const accountKey = PrivateKey.deserialize(bytes("account identity", 32)).getPublicKey().serialize();

const message = {
  accountId: "alice",
  deviceId: 2,
  accountIdentityKey: accountKey,
  signedDeviceIdentity: bytes("signed device identity", 32),
  signedDeviceList: bytes("signed device list", 24),
  primaryName: "Alice's phone",
};

const stream = [primaryPrivate.serialize(), nonce];
const envelope = sealProvisioningMessage({
  companionEphemeralPublic: companionPublic,
  message,
  random: (n) => {
    const next = stream.shift();
    if (next?.length !== n) throw new Error("unexpected random request");
    return next;
  },
});

const shared = primaryPrivate.agree(
  PublicKey.deserialize(companionPrivate.getPublicKey().serialize()),
);
const aesKey = new Uint8Array(
  hkdfSync(
    "sha256",
    shared,
    concatBytes(primaryPublic, companionPublic),
    utf8(PROVISIONING_INFO),
    32,
  ),
);

const vectors = {
  description:
    "Provisioning envelope from fixed keys. random() yields primaryEphemeralPrivate then nonce. " +
    "aesKey = HKDF-SHA256(sharedSecret, salt = primaryEphemeralPublic || companionEphemeralPublic, " +
    "info = 'Pairwise Provisioning v1'); AAD = 0x01 || primaryEphemeralPublic.",
  companionEphemeralPrivate: toHex(companionPrivate.serialize()),
  companionEphemeralPublic: toHex(companionPublic),
  primaryEphemeralPrivate: toHex(primaryPrivate.serialize()),
  primaryEphemeralPublic: toHex(primaryPublic),
  nonce: toHex(nonce),
  sharedSecret: toHex(shared),
  aesKey: toHex(aesKey),
  message: {
    accountId: message.accountId,
    deviceId: message.deviceId,
    accountIdentityKey: toHex(message.accountIdentityKey),
    signedDeviceIdentity: toHex(message.signedDeviceIdentity),
    signedDeviceList: toHex(message.signedDeviceList),
    primaryName: message.primaryName,
  },
  envelope: toHex(envelope),
};

writeFileSync(
  new URL("./provisioning.json", import.meta.url),
  `${JSON.stringify(vectors, null, 2)}\n`,
);
