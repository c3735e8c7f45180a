/**
 * Writes adv.json, once: known-answer vectors for ADV (src/internal/adv.ts, device-list.ts).
 * Run from packages/core: `npx tsx test/vectors/generate-adv.ts`.
 *
 * Built straight from PROTOCOL.md with protobuf-es, libsignal and node:crypto, not through
 * adv.ts, so the vectors cross-check it. Keys come from fixed 32-byte private keys. XEdDSA
 * signatures are randomized, so the vectors pin the signature INPUT bytes and carry one
 * signature generated here that must keep verifying.
 */
import { createHash, createHmac } from "node:crypto";
import { writeFileSync } from "node:fs";
import { create, toBinary } from "@bufbuild/protobuf";
import { PrivateKey } from "@signalapp/libsignal-client";
import {
  DeviceIdentitySchema,
  DeviceListSchema,
  SignedDeviceIdentitySchema,
  SignedDeviceListSchema,
} from "../../src/gen/pairwise_pb.ts";
import { concatBytes, toHex } from "../../src/internal/bytes.ts";

function bytes(label: string, length: number): Uint8Array<ArrayBuffer> {
  const digest = createHash("sha256").update(`pairwise adv vector ${label}`).digest();
  return new Uint8Array(digest.subarray(0, length));
}

const accountPrivate = PrivateKey.deserialize(bytes("account identity", 32));
const primaryPrivate = PrivateKey.deserialize(bytes("primary device identity", 32));
const companionPrivate = PrivateKey.deserialize(bytes("companion device identity", 32));
const accountPublic = accountPrivate.getPublicKey().serialize();
const linkSecret = bytes("link secret", 32);

function identityCase(
  name: string,
  identity: { accountId: string; deviceId: number; keyIndex: number; createdAt: number },
  devicePrivate: PrivateKey,
  withLink: boolean,
) {
  const details = toBinary(
    DeviceIdentitySchema,
    create(DeviceIdentitySchema, { ...identity, createdAt: BigInt(identity.createdAt) }),
  );
  const devicePublic = devicePrivate.getPublicKey().serialize();
  const accountInput = concatBytes(Uint8Array.of(0x06, 0x00), details, devicePublic);
  const deviceInput = concatBytes(Uint8Array.of(0x06, 0x01), details, devicePublic, accountPublic);
  const linkHmac = withLink
    ? new Uint8Array(createHmac("sha256", linkSecret).update(details).digest())
    : new Uint8Array(0);
  const signed = toBinary(
    SignedDeviceIdentitySchema,
    create(SignedDeviceIdentitySchema, {
      details,
      accountSignature: accountPrivate.sign(accountInput),
      deviceSignature: devicePrivate.sign(deviceInput),
      linkHmac,
    }),
  );
  return {
    name,
    identity,
    devicePrivate: toHex(devicePrivate.serialize()),
    devicePublic: toHex(devicePublic),
    details: toHex(details),
    accountSignatureInput: toHex(accountInput),
    deviceSignatureInput: toHex(deviceInput),
    linkHmac: toHex(linkHmac),
    signed: toHex(signed),
  };
}

function listCase(
  name: string,
  list: {
    accountId: string;
    timestamp: number;
    currentKeyIndex: number;
    validKeyIndexes: number[];
  },
) {
  const details = toBinary(
    DeviceListSchema,
    create(DeviceListSchema, { ...list, timestamp: BigInt(list.timestamp) }),
  );
  const input = concatBytes(Uint8Array.of(0x06, 0x02), details);
  const signed = toBinary(
    SignedDeviceListSchema,
    create(SignedDeviceListSchema, { details, accountSignature: accountPrivate.sign(input) }),
  );
  return {
    name,
    list,
    details: toHex(details),
    signatureInput: toHex(input),
    signed: toHex(signed),
  };
}

const vectors = {
  description:
    "ADV known answers (PROTOCOL.md 'ADV'). Keys: libsignal PrivateKey.deserialize of the hex " +
    "private keys; public keys are the 33-byte serialized form. Signatures are XEdDSA " +
    "(randomized): check the *Input bytes exactly and that each 'signed' message verifies.",
  accountPrivate: toHex(accountPrivate.serialize()),
  accountPublic: toHex(accountPublic),
  linkSecret: toHex(linkSecret),
  deviceIdentities: [
    identityCase(
      "primary",
      { accountId: "alice", deviceId: 1, keyIndex: 0, createdAt: 1_700_000_000_000 },
      primaryPrivate,
      false,
    ),
    identityCase(
      "companion",
      { accountId: "alice", deviceId: 2, keyIndex: 3, createdAt: 1_700_000_123_456 },
      companionPrivate,
      true,
    ),
  ],
  deviceLists: [
    listCase("primary only", {
      accountId: "alice",
      timestamp: 1_700_000_000_000,
      currentKeyIndex: 0,
      validKeyIndexes: [0],
    }),
    listCase("with companions", {
      accountId: "alice",
      timestamp: 1_700_000_200_000,
      currentKeyIndex: 300,
      validKeyIndexes: [0, 3, 300],
    }),
  ],
};

writeFileSync(new URL("adv.json", import.meta.url), JSON.stringify(vectors, null, 2) + "\n");
