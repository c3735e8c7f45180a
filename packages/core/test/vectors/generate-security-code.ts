/**
 * Writes security-code.json, once: fixed keys derived from labels, expected codes. The single-key
 * cases are computed by libsignal's own Fingerprint (the reference); the extended cases by
 * computeSecurityCode. Run from packages/core: `npx tsx test/vectors/generate-security-code.ts`.
 */
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { Fingerprint, PrivateKey, PublicKey } from "@signalapp/libsignal-client";
import { toHex, utf8 } from "../../src/internal/bytes.ts";
import {
  SECURITY_CODE_ITERATIONS,
  SECURITY_CODE_SCANNABLE_VERSION,
  computeSecurityCode,
} from "../../src/internal/security-code.ts";

function key(label: string): Uint8Array<ArrayBuffer> {
  const seed = createHash("sha256").update(`pairwise security-code vector ${label}`).digest();
  return PrivateKey.deserialize(new Uint8Array(seed)).getPublicKey().serialize();
}

interface Party {
  stableId: string;
  accountKey: Uint8Array;
  deviceKeys: Uint8Array[];
}

const alice: Party = { stableId: "alice", accountKey: key("alice account"), deviceKeys: [] };
const bob: Party = { stableId: "bob", accountKey: key("bob account"), deviceKeys: [] };
const aliceDevices = [key("alice device 1"), key("alice device 2"), key("alice device 3")];
const bobDevices = [key("bob device 1")];

function libsignalCase(name: string, local: Party, remote: Party) {
  const fp = Fingerprint.new(
    SECURITY_CODE_ITERATIONS,
    SECURITY_CODE_SCANNABLE_VERSION,
    utf8(local.stableId),
    PublicKey.deserialize(new Uint8Array(local.accountKey)),
    utf8(remote.stableId),
    PublicKey.deserialize(new Uint8Array(remote.accountKey)),
  );
  return {
    name,
    local: hexParty(local),
    remote: hexParty(remote),
    digits: fp.displayableFingerprint().toString(),
    scannable: toHex(fp.scannableFingerprint().toBuffer()),
  };
}

function extendedCase(name: string, local: Party, remote: Party) {
  const code = computeSecurityCode({ local, remote });
  return {
    name,
    local: hexParty(local),
    remote: hexParty(remote),
    digits: code.digits,
    scannable: toHex(code.scannable),
  };
}

function hexParty(p: Party) {
  return {
    stableId: p.stableId,
    accountKey: toHex(p.accountKey),
    deviceKeys: p.deviceKeys.map(toHex),
  };
}

const aliceExt: Party = { ...alice, deviceKeys: aliceDevices };
const bobExt: Party = { ...bob, deviceKeys: bobDevices };

const vectors = {
  description:
    "Pairwise security codes. single-* cases were computed by libsignal Fingerprint.new(5200, 1, ...); " +
    "extended-* by computeSecurityCode. deviceKeys are listed in the order given to the function.",
  iterations: SECURITY_CODE_ITERATIONS,
  scannableVersion: SECURITY_CODE_SCANNABLE_VERSION,
  cases: [
    libsignalCase("single-alice-view", alice, bob),
    libsignalCase("single-bob-view", bob, alice),
    extendedCase("extended-alice-view", aliceExt, bobExt),
    extendedCase("extended-bob-view", bobExt, aliceExt),
    extendedCase("extended-one-side", aliceExt, bob),
  ],
};

writeFileSync(
  new URL("./security-code.json", import.meta.url),
  `${JSON.stringify(vectors, null, 2)}\n`,
);
