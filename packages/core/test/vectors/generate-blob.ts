/**
 * Writes blob.json: known-answer vectors for the blob format (src/internal/blob.ts).
 * Run once from packages/core: `npx tsx test/vectors/generate-blob.ts`.
 *
 * Deliberately a separate, straight-line implementation of the format (only node:crypto), so
 * the vectors cross-check blob.ts instead of echoing it. Inputs are fixed; nothing is random.
 */
import { createCipheriv, createHash, hkdfSync } from "node:crypto";
import { writeFileSync } from "node:fs";

interface Slot {
  type: number;
  data: string;
}
interface Case {
  name: string;
  key: Buffer;
  nonce: Buffer;
  slots: { type: number; data: Buffer }[];
  plaintext: Buffer;
  /** Set for large plaintexts: byte i is (i * 7 + 3) mod 256, and only the digest is stored. */
  patternLength?: number;
}

const CHUNK = 65_536;

function pattern(length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 7 + 3) % 256;
  return out;
}

function seq(length: number, start: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => (start + i) % 256));
}

function encrypt(c: Case): Buffer {
  const slotBytes = c.slots.map((s) => {
    const head = Buffer.alloc(3);
    head[0] = s.type;
    head.writeUInt16BE(s.data.length, 1);
    return Buffer.concat([head, s.data]);
  });
  const header = Buffer.concat([
    Buffer.from("PWBL", "ascii"),
    Buffer.of(1),
    c.nonce,
    Buffer.of(c.slots.length),
    ...slotBytes,
  ]);
  const key = Buffer.from(hkdfSync("sha256", c.key, c.nonce, Buffer.from("payload"), 32));
  const chunks: Buffer[] = [];
  for (let start = 0; start === 0 || start < c.plaintext.length; start += CHUNK) {
    const end = Math.min(start + CHUNK, c.plaintext.length);
    const nonce = Buffer.alloc(12);
    nonce.writeBigUInt64BE(BigInt(start / CHUNK), 3); // 11-byte counter: 3 zero bytes, then 8
    nonce[11] = end === c.plaintext.length ? 1 : 0;
    const cipher = createCipheriv("aes-256-gcm", key, nonce);
    cipher.setAAD(header);
    chunks.push(
      cipher.update(c.plaintext.subarray(start, end)),
      cipher.final(),
      cipher.getAuthTag(),
    );
  }
  return Buffer.concat([header, ...chunks]);
}

const cases: Case[] = [
  { name: "empty", key: seq(32, 0), nonce: seq(16, 0xa0), slots: [], plaintext: Buffer.alloc(0) },
  {
    name: "short text",
    key: Buffer.alloc(32, 0x42),
    nonce: Buffer.alloc(16, 0x07),
    slots: [],
    plaintext: Buffer.from("Pairwise blob format, version 1", "utf8"),
  },
  {
    name: "with key slots",
    key: seq(32, 0x80),
    nonce: seq(16, 0x10),
    slots: [
      { type: 1, data: seq(5, 0xe0) },
      { type: 2, data: Buffer.alloc(0) },
    ],
    plaintext: pattern(100),
  },
  {
    name: "one full chunk",
    key: seq(32, 0x33),
    nonce: seq(16, 0x55),
    slots: [],
    plaintext: pattern(CHUNK),
    patternLength: CHUNK,
  },
  {
    name: "two chunks and a bit",
    key: seq(32, 0x01),
    nonce: seq(16, 0xf0),
    slots: [],
    plaintext: pattern(2 * CHUNK + 17),
    patternLength: 2 * CHUNK + 17,
  },
];

const vectors = cases.map((c) => {
  const ciphertext = encrypt(c);
  const slots: Slot[] = c.slots.map((s) => ({ type: s.type, data: s.data.toString("hex") }));
  return {
    name: c.name,
    key: c.key.toString("hex"),
    nonce: c.nonce.toString("hex"),
    slots,
    ...(c.patternLength === undefined
      ? { plaintext: c.plaintext.toString("hex"), ciphertext: ciphertext.toString("hex") }
      : { plaintextPatternLength: c.patternLength }),
    ciphertextLength: ciphertext.length,
    ciphertextSha256: createHash("sha256").update(ciphertext).digest("hex"),
  };
});

const file = {
  description:
    "Pairwise blob format v1 known answers. Large cases give plaintextPatternLength: byte i = (i * 7 + 3) mod 256; only their ciphertext digest is stored.",
  generator: "test/vectors/generate-blob.ts",
  vectors,
};
writeFileSync(new URL("./blob.json", import.meta.url), JSON.stringify(file, null, 2) + "\n");
