import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { TransportError } from "./errors.ts";
import { noiseKeyPairFromPrivateKey } from "./noise-keys.ts";
import { NOISE_PROTOCOL_NAME, XxHandshake } from "./noise-handshake.ts";

interface VectorFile {
  vector: {
    protocol_name: string;
    init_prologue: string;
    init_static: string;
    init_ephemeral: string;
    resp_prologue: string;
    resp_static: string;
    resp_ephemeral: string;
    handshake_hash: string;
    messages: { payload: string; ciphertext: string }[];
  };
}

const { vector } = JSON.parse(
  readFileSync(new URL("../../test/vectors/noise-xx.json", import.meta.url), "utf8"),
) as VectorFile;
const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

function vectorHandshakes(): [XxHandshake, XxHandshake] {
  const initiator = new XxHandshake({
    initiator: true,
    prologue: hex(vector.init_prologue),
    staticKeyPair: noiseKeyPairFromPrivateKey(hex(vector.init_static)),
    ephemeralKeyPair: noiseKeyPairFromPrivateKey(hex(vector.init_ephemeral)),
  });
  const responder = new XxHandshake({
    initiator: false,
    prologue: hex(vector.resp_prologue),
    staticKeyPair: noiseKeyPairFromPrivateKey(hex(vector.resp_static)),
    ephemeralKeyPair: noiseKeyPairFromPrivateKey(hex(vector.resp_ephemeral)),
  });
  return [initiator, responder];
}

describe("Noise_XX_25519_AESGCM_SHA256 known-answer vector (cacophony)", () => {
  it("is the vector of the protocol we implement", () => {
    expect(vector.protocol_name).toBe(NOISE_PROTOCOL_NAME);
  });

  it("produces the vector's handshake messages, handshake hash and transport messages", () => {
    const [initiator, responder] = vectorHandshakes();
    const messages = vector.messages;
    for (let i = 0; i < 3; i++) {
      const { payload, ciphertext } = messages[i]!;
      const [writer, reader] = i % 2 === 0 ? [initiator, responder] : [responder, initiator];
      const written = writer.writeMessage(hex(payload));
      expect(toHex(written)).toBe(ciphertext);
      expect(toHex(reader.readMessage(written))).toBe(payload);
    }
    const i = initiator.result();
    const r = responder.result();
    expect(toHex(i.handshakeHash)).toBe(vector.handshake_hash);
    expect(toHex(r.handshakeHash)).toBe(vector.handshake_hash);
    expect(toHex(i.remoteStaticKey)).toBe(
      toHex(noiseKeyPairFromPrivateKey(hex(vector.resp_static)).publicKey),
    );
    expect(toHex(r.remoteStaticKey)).toBe(
      toHex(noiseKeyPairFromPrivateKey(hex(vector.init_static)).publicKey),
    );
    for (let n = 3; n < messages.length; n++) {
      const { payload, ciphertext } = messages[n]!;
      const [sender, receiver] = n % 2 === 0 ? [i, r] : [r, i];
      const sealed = sender.send.encrypt(hex(payload));
      expect(toHex(sealed)).toBe(ciphertext);
      expect(toHex(receiver.receive.decrypt(sealed))).toBe(payload);
    }
  });

  it("refuses a tampered handshake message with HandshakeFailed", () => {
    const [initiator, responder] = vectorHandshakes();
    responder.readMessage(initiator.writeMessage());
    const second = responder.writeMessage();
    second[40] = (second[40] ?? 0) ^ 1;
    expect(() => initiator.readMessage(second)).toThrow(TransportError);
    try {
      initiator.readMessage(second);
    } catch (err) {
      expect(TransportError.is(err, "InvalidState")).toBe(true); // unusable after a failure
    }
  });

  it("refuses messages out of turn", () => {
    const [initiator] = vectorHandshakes();
    expect(() => initiator.readMessage(new Uint8Array(32))).toThrow(/out of order/);
  });
});
