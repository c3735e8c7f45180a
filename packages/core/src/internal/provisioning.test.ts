import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { IdentityKeyPair, PrivateKey, PublicKey } from "@signalapp/libsignal-client";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import vectors from "../../test/vectors/provisioning.json" with { type: "json" };
import { ProvisioningEnvelopeSchema, ProvisioningMessageSchema } from "../gen/pairwise_pb.ts";
import { concatBytes, fromHex, toBytes, toHex, utf8 } from "./bytes.ts";
import { CoreError } from "./errors.ts";
import { createEphemeralLinkKeys } from "./link-uri.ts";
import { decodeProto, encodeProto } from "./proto.ts";
import {
  MAX_PROVISIONING_ENVELOPE_BYTES,
  PROVISIONING_INFO,
  openProvisioningEnvelope,
  sealProvisioningMessage,
  type ProvisioningPayload,
} from "./provisioning.ts";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return CoreError.is(err) ? err.code : "not a CoreError";
  }
  return undefined;
}

const vectorMessage: ProvisioningPayload = {
  accountId: vectors.message.accountId,
  deviceId: vectors.message.deviceId,
  accountIdentityKey: fromHex(vectors.message.accountIdentityKey, "key"),
  signedDeviceIdentity: fromHex(vectors.message.signedDeviceIdentity, "sdi"),
  signedDeviceList: fromHex(vectors.message.signedDeviceList, "sdl"),
  primaryName: vectors.message.primaryName,
};

function sampleMessage(): ProvisioningPayload {
  return {
    accountId: "account-1",
    deviceId: 3,
    accountIdentityKey: IdentityKeyPair.generate().publicKey.serialize(),
    signedDeviceIdentity: new Uint8Array(randomBytes(180)),
    signedDeviceList: new Uint8Array(randomBytes(120)),
    primaryName: "Phone",
  };
}

/** Seals arbitrary plaintext by the documented layout, independently of provisioning.ts. */
function sealRaw(companionPublic: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const primary = PrivateKey.generate();
  const primaryPublic = primary.getPublicKey().serialize().subarray(1);
  const shared = primary.agree(
    PublicKey.deserialize(concatBytes(Uint8Array.of(5), companionPublic)),
  );
  const key = hkdfSync(
    "sha256",
    shared,
    concatBytes(primaryPublic, companionPublic),
    PROVISIONING_INFO,
    32,
  );
  const nonce = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", Buffer.from(key), nonce);
  cipher.setAAD(concatBytes(Uint8Array.of(1), primaryPublic));
  const body = concatBytes(nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag());
  return encodeProto(
    ProvisioningEnvelopeSchema,
    create(ProvisioningEnvelopeSchema, {
      version: 1,
      ephemeralPublic: toBytes(primaryPublic),
      ciphertext: body,
    }),
  );
}

describe("provisioning known answer", () => {
  const companionPrivate = fromHex(vectors.companionEphemeralPrivate, "priv");

  it("seals the vector envelope from fixed keys and nonce", () => {
    const stream = [fromHex(vectors.primaryEphemeralPrivate, "p"), fromHex(vectors.nonce, "n")];
    const envelope = sealProvisioningMessage({
      companionEphemeralPublic: fromHex(vectors.companionEphemeralPublic, "pub"),
      message: vectorMessage,
      random: (n) => {
        const next = stream.shift();
        expect(next).toHaveLength(n);
        return next ?? new Uint8Array(0);
      },
    });
    expect(toHex(envelope)).toBe(vectors.envelope);
  });

  it("opens the vector envelope", () => {
    const opened = openProvisioningEnvelope({
      ephemeralPrivate: companionPrivate,
      envelope: fromHex(vectors.envelope, "env"),
    });
    expect(opened).toEqual(vectorMessage);
  });

  it("follows the documented key schedule and layout", () => {
    const shared = fromHex(vectors.sharedSecret, "shared");
    const primaryPublic = fromHex(vectors.primaryEphemeralPublic, "pp");
    const companionPublic = fromHex(vectors.companionEphemeralPublic, "cp");
    const key = hkdfSync(
      "sha256",
      shared,
      concatBytes(primaryPublic, companionPublic),
      utf8(PROVISIONING_INFO),
      32,
    );
    expect(toHex(new Uint8Array(key))).toBe(vectors.aesKey);

    const envelope = decodeProto(
      ProvisioningEnvelopeSchema,
      fromHex(vectors.envelope, "env"),
      "env",
    );
    expect(envelope.version).toBe(1);
    expect(toHex(envelope.ephemeralPublic)).toBe(vectors.primaryEphemeralPublic);
    const data = envelope.ciphertext;
    expect(toHex(data.subarray(0, 12))).toBe(vectors.nonce);
    const decipher = createDecipheriv(
      "aes-256-gcm",
      fromHex(vectors.aesKey, "k"),
      data.subarray(0, 12),
    );
    decipher.setAAD(concatBytes(Uint8Array.of(1), primaryPublic));
    decipher.setAuthTag(data.subarray(data.length - 16));
    const plaintext = concatBytes(
      decipher.update(data.subarray(12, data.length - 16)),
      decipher.final(),
    );
    expect(decodeProto(ProvisioningMessageSchema, plaintext, "msg").accountId).toBe("alice");
  });
});

describe("provisioning envelope", () => {
  it("round-trips to the companion that made the link keys", () => {
    const keys = createEphemeralLinkKeys();
    const message = sampleMessage();
    const envelope = sealProvisioningMessage({ companionEphemeralPublic: keys.publicKey, message });
    expect(openProvisioningEnvelope({ ephemeralPrivate: keys.privateKey, envelope })).toEqual(
      message,
    );
  });

  it("uses a fresh key and nonce every time", () => {
    const keys = createEphemeralLinkKeys();
    const message = sampleMessage();
    const a = sealProvisioningMessage({ companionEphemeralPublic: keys.publicKey, message });
    const b = sealProvisioningMessage({ companionEphemeralPublic: keys.publicKey, message });
    expect(toHex(a)).not.toBe(toHex(b));
  });

  it("fails to open with another key", () => {
    const keys = createEphemeralLinkKeys();
    const envelope = sealProvisioningMessage({
      companionEphemeralPublic: keys.publicKey,
      message: sampleMessage(),
    });
    const other = createEphemeralLinkKeys();
    expect(
      codeOf(() => openProvisioningEnvelope({ ephemeralPrivate: other.privateKey, envelope })),
    ).toBe("DecryptionFailed");
  });

  it("detects tampering with the ciphertext and the ephemeral key", () => {
    const keys = createEphemeralLinkKeys();
    const envelope = decodeProto(
      ProvisioningEnvelopeSchema,
      sealProvisioningMessage({
        companionEphemeralPublic: keys.publicKey,
        message: sampleMessage(),
      }),
      "env",
    );
    const reencode = (
      patch: Partial<{ version: number; ephemeralPublic: Uint8Array; ciphertext: Uint8Array }>,
    ) =>
      encodeProto(
        ProvisioningEnvelopeSchema,
        create(ProvisioningEnvelopeSchema, { ...envelope, ...patch }),
      );
    const open = (bytes: Uint8Array) =>
      codeOf(() =>
        openProvisioningEnvelope({ ephemeralPrivate: keys.privateKey, envelope: bytes }),
      );

    for (const index of [0, 11, 12, envelope.ciphertext.length - 1]) {
      const ciphertext = new Uint8Array(envelope.ciphertext);
      ciphertext[index] = (ciphertext[index] ?? 0) ^ 0x80;
      expect(open(reencode({ ciphertext }))).toBe("DecryptionFailed");
    }
    expect(open(reencode({ ephemeralPublic: createEphemeralLinkKeys().publicKey }))).toBe(
      "DecryptionFailed",
    );
    expect(open(reencode({ ephemeralPublic: new Uint8Array(32) }))).toBe("MalformedInput");
    expect(open(reencode({ ephemeralPublic: new Uint8Array(33) }))).toBe("MalformedInput");
    expect(open(reencode({ version: 2 }))).toBe("MalformedInput");
    expect(open(reencode({ ciphertext: envelope.ciphertext.subarray(0, 27) }))).toBe(
      "MalformedInput",
    );
    expect(open(new Uint8Array(MAX_PROVISIONING_ENVELOPE_BYTES + 1))).toBe("InputTooLarge");
  });

  it("rejects authentic envelopes whose message is out of range", () => {
    const keys = createEphemeralLinkKeys();
    const open = (plaintext: Uint8Array) =>
      codeOf(() =>
        openProvisioningEnvelope({
          ephemeralPrivate: keys.privateKey,
          envelope: sealRaw(keys.publicKey, plaintext),
        }),
      );
    const good = sampleMessage();
    const encode = (patch: Partial<ProvisioningPayload>) =>
      encodeProto(
        ProvisioningMessageSchema,
        create(ProvisioningMessageSchema, { ...good, ...patch }),
      );

    expect(open(encode({}))).toBeUndefined();
    expect(open(encode({ deviceId: 1 }))).toBe("MalformedInput");
    expect(open(encode({ deviceId: 128 }))).toBe("MalformedInput");
    expect(open(encode({ accountId: "" }))).toBe("MalformedInput");
    expect(open(encode({ accountId: "a".repeat(65) }))).toBe("MalformedInput");
    expect(open(encode({ accountId: "Alice" }))).toBe("MalformedInput");
    expect(open(encode({ accountIdentityKey: new Uint8Array(32) }))).toBe("MalformedInput");
    expect(open(encode({ signedDeviceIdentity: new Uint8Array(0) }))).toBe("MalformedInput");
    expect(open(encode({ signedDeviceList: new Uint8Array(0) }))).toBe("MalformedInput");
    expect(open(encode({ primaryName: "n".repeat(65) }))).toBe("MalformedInput");
    expect(open(Uint8Array.of(0xff, 0xff, 0xff))).toBe("MalformedInput");
  });

  it("refuses to seal bad input", () => {
    const keys = createEphemeralLinkKeys();
    const seal = (companionEphemeralPublic: Uint8Array, patch: Partial<ProvisioningPayload> = {}) =>
      codeOf(() =>
        sealProvisioningMessage({
          companionEphemeralPublic,
          message: { ...sampleMessage(), ...patch },
        }),
      );

    expect(seal(new Uint8Array(33))).toBe("InvalidKey");
    expect(seal(new Uint8Array(32))).toBe("InvalidKey");
    expect(seal(keys.publicKey, { deviceId: 1 })).toBe("InvalidArgument");
    expect(seal(keys.publicKey, { deviceId: 2.5 })).toBe("InvalidArgument");
    expect(seal(keys.publicKey, { accountId: "" })).toBe("InvalidArgument");
    expect(seal(keys.publicKey, { accountIdentityKey: keys.publicKey })).toBe("InvalidArgument");
    expect(seal(keys.publicKey, { signedDeviceList: new Uint8Array(16 * 1024 + 1) })).toBe(
      "InvalidArgument",
    );
    expect(
      codeOf(() =>
        sealProvisioningMessage({
          companionEphemeralPublic: keys.publicKey,
          message: sampleMessage(),
          random: () => new Uint8Array(1),
        }),
      ),
    ).toBe("InvalidArgument");
    expect(
      codeOf(() =>
        openProvisioningEnvelope({
          ephemeralPrivate: new Uint8Array(31),
          envelope: new Uint8Array(0),
        }),
      ),
    ).toBe("InvalidArgument");
  });

  it("throws only CoreError on random and mutated envelopes", () => {
    const keys = createEphemeralLinkKeys();
    const valid = sealProvisioningMessage({
      companionEphemeralPublic: keys.publicKey,
      message: sampleMessage(),
    });
    const open = (envelope: Uint8Array) =>
      codeOf(() => openProvisioningEnvelope({ ephemeralPrivate: keys.privateKey, envelope }));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        expect(open(bytes)).toMatch(/^(MalformedInput|DecryptionFailed)$/);
      }),
      { numRuns: 150 },
    );
    fc.assert(
      fc.property(
        fc.nat({ max: valid.length - 1 }),
        fc.nat({ max: 8 }),
        fc.uint8Array({ maxLength: 4 }),
        (start, length, insert) => {
          const mutated = concatBytes(
            valid.subarray(0, start),
            insert,
            valid.subarray(start + length),
          );
          const code = open(mutated);
          // Appending an unknown protobuf field leaves the authenticated content intact.
          expect(
            code === undefined || code === "MalformedInput" || code === "DecryptionFailed",
          ).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });
});
