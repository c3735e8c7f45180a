import { createCipheriv, createHash, hkdfSync, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import fc from "fast-check";
import { expectCode } from "../../test/support.ts";
import { describe, expect, it } from "vitest";
import {
  BLOB_CHUNK_SIZE,
  blobCiphertextSize,
  createBlobDecryptStream,
  createBlobEncryptStream,
  createBlobOpener,
  createBlobSealer,
  decryptBlob,
  encryptBlob,
  generateBlobKey,
  readBlobHeader,
  type BlobKeySlot,
  type BlobStream,
} from "./blob.ts";
import { concatBytes, fromHex, toHex } from "./bytes.ts";
import { CoreError, type CoreErrorCode } from "./errors.ts";

const SEALED = BLOB_CHUNK_SIZE + 16;
const HEADER = 22;

function pattern(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 7 + 3) % 256;
  return out;
}

function fixedRandom(bytes: Uint8Array): (n: number) => Uint8Array {
  return (n) => bytes.subarray(0, n);
}

/** Fast byte comparison: `toEqual` walks typed arrays element by element. */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  expect(Buffer.compare(actual, expected)).toBe(0);
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Cuts `data` at the given (unsorted, possibly repeated) offsets. */
function split(data: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => Math.min(c, data.length)))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let start = 0;
  for (const p of [...points, data.length]) {
    pieces.push(data.subarray(start, p));
    start = p;
  }
  return pieces;
}

async function run(stream: BlobStream, pieces: readonly Uint8Array[]): Promise<Uint8Array> {
  const out: Uint8Array[] = [];
  await pipeline(Readable.from(pieces.map((p) => Buffer.from(p))), stream, async (source) => {
    for await (const chunk of source as AsyncIterable<Buffer>) out.push(chunk);
  });
  return concatBytes(...out);
}

async function codeOf(action: () => unknown): Promise<CoreErrorCode | "none" | "not CoreError"> {
  try {
    await action();
    return "none";
  } catch (err) {
    return CoreError.is(err) ? err.code : "not CoreError";
  }
}

/** Error codes from the in-memory and the streaming decryptor, which must agree. */
async function decryptCodes(key: Uint8Array, ciphertext: Uint8Array): Promise<string[]> {
  return [
    await codeOf(() => decryptBlob(key, ciphertext)),
    await codeOf(() => run(createBlobDecryptStream({ key }), [ciphertext])),
  ];
}

describe("blob round trips", () => {
  const key = generateBlobKey();
  it.each([0, 1, 65_535, 65_536, 65_537, 3 * 65_536, 1_048_576 + 123])(
    "%i bytes, in memory and streamed",
    async (size) => {
      const plaintext = randomBytes(size);
      const ciphertext = encryptBlob(key, plaintext);
      expect(ciphertext.length).toBe(blobCiphertextSize(size));
      expectSameBytes(decryptBlob(key, ciphertext), new Uint8Array(plaintext));

      const enc = createBlobEncryptStream({ key });
      const streamed = await run(enc, [plaintext]);
      expect(streamed.length).toBe(blobCiphertextSize(size));
      expect(toHex(enc.digest())).toBe(sha256(streamed));
      expect(enc.plaintextBytes).toBe(size);
      expect(enc.ciphertextBytes).toBe(streamed.length);

      const dec = createBlobDecryptStream({ key, expectedSha256: enc.digest() });
      expectSameBytes(await run(dec, [streamed]), new Uint8Array(plaintext));
      expect(toHex(dec.digest())).toBe(sha256(streamed));
    },
  );

  it("streams produce the same bytes however the input is split", async () => {
    const nonce = randomBytes(16);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 3 * BLOB_CHUNK_SIZE + 5 }),
        fc.array(fc.nat({ max: 3 * BLOB_CHUNK_SIZE + 5 }), { maxLength: 8 }),
        fc.array(fc.nat({ max: 3 * SEALED + HEADER + 5 }), { maxLength: 8 }),
        async (size, plainCuts, cipherCuts) => {
          const plaintext = pattern(size);
          const expected = encryptBlob(key, plaintext, { random: fixedRandom(nonce) });
          const enc = createBlobEncryptStream({ key, random: fixedRandom(nonce) });
          expectSameBytes(await run(enc, split(plaintext, plainCuts)), expected);
          const dec = createBlobDecryptStream({ key });
          expectSameBytes(await run(dec, split(expected, cipherCuts)), plaintext);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("decrypts input written one byte at a time around chunk boundaries", async () => {
    const plaintext = pattern(BLOB_CHUNK_SIZE + 3);
    const ciphertext = encryptBlob(key, plaintext);
    const cuts = [1, 2, 3, 21, 22, 23, SEALED + HEADER - 1, SEALED + HEADER, SEALED + HEADER + 1];
    expectSameBytes(
      await run(createBlobDecryptStream({ key }), split(ciphertext, cuts)),
      plaintext,
    );
  });
});

describe("blob chunk-level sealer and opener", () => {
  const key = generateBlobKey();
  const nonce = randomBytes(16);

  it.each([1, 65_536, 65_537, 2 * 65_536 + 5])(
    "%i bytes: the sealer's output is the stream's, byte for byte, and opens chunk by chunk",
    async (size) => {
      const plaintext = randomBytes(size);
      const sealer = createBlobSealer({ key, random: () => nonce });
      const out: Uint8Array[] = [sealer.header];
      for (let at = 0; at < size; at += BLOB_CHUNK_SIZE) {
        const end = Math.min(at + BLOB_CHUNK_SIZE, size);
        const { body, tag } = sealer.seal(plaintext.subarray(at, end), end === size);
        expect(tag.length).toBe(16);
        out.push(body, tag);
      }
      expect(sealer.chunks).toBe(Math.ceil(size / BLOB_CHUNK_SIZE));
      const sealed = concatBytes(...out);
      const streamed = await run(createBlobEncryptStream({ key, random: () => nonce }), [
        plaintext,
      ]);
      expect(toHex(sealed)).toBe(toHex(streamed));

      const opener = createBlobOpener(key, sealed);
      const body = sealed.subarray(opener.headerLength);
      const opened: Uint8Array[] = [];
      for (let at = 0; at < body.length; at += SEALED) {
        const end = Math.min(at + SEALED, body.length);
        opened.push(opener.open(body.subarray(at, end), end === body.length));
      }
      expectSameBytes(concatBytes(...opened), new Uint8Array(plaintext));
    },
  );

  it("refuses chunks of the wrong size and anything after the final chunk", () => {
    const sealer = createBlobSealer({ key });
    expectCode(() => sealer.seal(new Uint8Array(100), false), "InvalidArgument");
    expectCode(() => sealer.seal(new Uint8Array(BLOB_CHUNK_SIZE + 1), true), "InvalidArgument");
    sealer.seal(new Uint8Array(10), true);
    expectCode(() => sealer.seal(new Uint8Array(10), true), "InvalidArgument");
  });

  it("an opener refuses a reordered, modified, wrongly flagged or odd-sized chunk", () => {
    const sealer = createBlobSealer({ key });
    const a = sealer.seal(randomBytes(BLOB_CHUNK_SIZE), false);
    const b = sealer.seal(randomBytes(100), true);
    const first = concatBytes(a.body, a.tag);
    const last = concatBytes(b.body, b.tag);
    expectCode(() => createBlobOpener(key, sealer.header).open(last, false), "MalformedInput");
    expectCode(() => createBlobOpener(key, sealer.header).open(first, true), "DecryptionFailed");
    const flipped = Uint8Array.from(first);
    flipped[7] = (flipped[7] ?? 0) ^ 1;
    expectCode(() => createBlobOpener(key, sealer.header).open(flipped, false), "DecryptionFailed");
    const opener = createBlobOpener(key, sealer.header);
    opener.open(first, false);
    expectCode(() => opener.open(concatBytes(last, new Uint8Array(1)), true), "DecryptionFailed");
    expectCode(
      () => createBlobOpener(generateBlobKey(), sealer.header).open(first, false),
      "DecryptionFailed",
    );
  });
});

describe("blob header", () => {
  const key = generateBlobKey();
  const slots: BlobKeySlot[] = [
    { type: 1, data: pattern(40) },
    { type: 255, data: new Uint8Array(0) },
  ];

  it("carries key slots that readBlobHeader returns without the key", () => {
    const nonce = randomBytes(16);
    const ciphertext = encryptBlob(key, pattern(10), { slots, random: fixedRandom(nonce) });
    const header = readBlobHeader(ciphertext);
    expect(header).toEqual({
      version: 1,
      nonce: new Uint8Array(nonce),
      slots: slots.map((s) => ({ type: s.type, data: new Uint8Array(s.data) })),
      headerLength: HEADER + 3 + 40 + 3,
    });
    expect(ciphertext.length).toBe(blobCiphertextSize(10, { slots }));
    expect(decryptBlob(key, ciphertext)).toEqual(pattern(10));
  });

  it("rejects bad slots, oversized headers, bad keys and bad randomness when encrypting", async () => {
    expect(
      await codeOf(() => encryptBlob(key, pattern(1), { slots: [{ type: 0, data: pattern(1) }] })),
    ).toBe("InvalidArgument");
    const big = [{ type: 1, data: new Uint8Array(4096) }];
    expect(await codeOf(() => encryptBlob(key, pattern(1), { slots: big }))).toBe(
      "InvalidArgument",
    );
    expect(await codeOf(() => createBlobEncryptStream({ key: pattern(31) }))).toBe("InvalidKey");
    expect(await codeOf(() => createBlobDecryptStream({ key: pattern(33) }))).toBe("InvalidKey");
    expect(await codeOf(() => encryptBlob(key, pattern(1), { random: () => pattern(3) }))).toBe(
      "InvalidArgument",
    );
    expect(await codeOf(() => blobCiphertextSize(-1))).toBe("InvalidArgument");
    expect(await codeOf(() => createBlobEncryptStream({ key }).digest())).toBe("InvalidArgument");
  });

  it("rejects truncated, wrong-magic, wrong-version and reserved-slot headers", async () => {
    const good = encryptBlob(key, pattern(10), { slots });
    const cases: [Uint8Array, CoreErrorCode][] = [
      [good.subarray(0, 21), "MalformedInput"],
      [good.subarray(0, HEADER + 10), "MalformedInput"],
      [new Uint8Array(0), "MalformedInput"],
      [concatBytes(Uint8Array.of(0x50, 0x57, 0x42, 0x4d), good.subarray(4)), "MalformedInput"],
      [concatBytes(good.subarray(0, 4), Uint8Array.of(2), good.subarray(5)), "MalformedInput"],
      [
        concatBytes(good.subarray(0, HEADER), Uint8Array.of(0), good.subarray(HEADER + 1)),
        "MalformedInput",
      ],
    ];
    for (const [bytes, code] of cases) {
      expect(await codeOf(() => readBlobHeader(bytes))).toBe(code);
      expect(await decryptCodes(key, bytes)).toEqual([code, code]);
    }
  });
});

describe("blob tampering", () => {
  const key = generateBlobKey();
  const plaintext = pattern(2 * BLOB_CHUNK_SIZE + 100);
  const blob = encryptBlob(key, plaintext);
  const header = blob.subarray(0, HEADER);
  const chunk = (i: number) => blob.subarray(HEADER + i * SEALED, HEADER + (i + 1) * SEALED);
  const failed = ["DecryptionFailed", "DecryptionFailed"];

  it.each([
    ["drop the final chunk", concatBytes(header, chunk(0), chunk(1))],
    ["drop the last byte", blob.subarray(0, blob.length - 1)],
    ["truncate mid-chunk", blob.subarray(0, HEADER + SEALED + 1000)],
    ["truncate inside a tag", blob.subarray(0, HEADER + 2 * SEALED + 10)],
    ["header only", header],
    ["swap two chunks", concatBytes(header, chunk(1), chunk(0), chunk(2))],
    ["append a chunk", concatBytes(blob, chunk(1))],
    ["append garbage", concatBytes(blob, pattern(5))],
    ["append one byte", concatBytes(blob, Uint8Array.of(0))],
  ])("%s fails", async (_name, bytes) => {
    expect(await decryptCodes(key, bytes)).toEqual(failed);
  });

  it("a wrong key fails", async () => {
    expect(await decryptCodes(generateBlobKey(), blob)).toEqual(failed);
  });

  it("an empty final chunk after full chunks fails even when it authenticates", async () => {
    const nonce = blob.subarray(5, 21);
    const payloadKey = Buffer.from(hkdfSync("sha256", key, nonce, "payload", 32));
    const seal = (counter: number, last: boolean, data: Uint8Array) => {
      const iv = Buffer.alloc(12);
      iv[10] = counter;
      iv[11] = last ? 1 : 0;
      const c = createCipheriv("aes-256-gcm", payloadKey, iv).setAAD(header);
      return concatBytes(c.update(data), c.final(), c.getAuthTag());
    };
    const forged = concatBytes(
      header,
      seal(0, false, pattern(BLOB_CHUNK_SIZE)),
      seal(1, true, new Uint8Array(0)),
    );
    expect(await decryptCodes(key, forged)).toEqual(failed);
  });

  it("flipping any bit fails (MalformedInput only for magic, version or slot count)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: blob.length - 1 }),
        fc.integer({ min: 0, max: 7 }),
        async (at, bit) => {
          const bytes = new Uint8Array(blob);
          bytes[at] = (bytes[at] ?? 0) ^ (1 << bit);
          const [inMemory, streamed] = await decryptCodes(key, bytes);
          expect(streamed).toBe(inMemory);
          // A changed slot count reads body bytes as slots: a bad header or a failed chunk.
          if (at === 21) expect(["MalformedInput", "DecryptionFailed"]).toContain(inMemory);
          else expect(inMemory).toBe(at < 5 ? "MalformedInput" : "DecryptionFailed");
        },
      ),
      { numRuns: 150 },
    );
  });

  it("a digest mismatch fails the decrypt stream", async () => {
    const dec = createBlobDecryptStream({ key, expectedSha256: new Uint8Array(32) });
    expect(await codeOf(() => run(dec, [blob]))).toBe("DecryptionFailed");
  });

  it("random and mutated bytes only ever raise CoreError", async () => {
    const prefix = blob.subarray(0, 5);
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 300 }),
        fc.boolean(),
        async (random, withMagic) => {
          const bytes = withMagic ? concatBytes(prefix, random) : random;
          for (const code of await decryptCodes(key, bytes)) {
            expect(["MalformedInput", "DecryptionFailed"]).toContain(code);
          }
          const header = await codeOf(() => readBlobHeader(bytes));
          expect(["none", "MalformedInput"]).toContain(header);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("blob known answers", () => {
  interface Vector {
    name: string;
    key: string;
    nonce: string;
    slots: { type: number; data: string }[];
    plaintext?: string;
    plaintextPatternLength?: number;
    ciphertext?: string;
    ciphertextLength: number;
    ciphertextSha256: string;
  }
  const file = JSON.parse(
    readFileSync(new URL("../../test/vectors/blob.json", import.meta.url), "utf8"),
  ) as { vectors: Vector[] };

  it.each(file.vectors.map((v) => [v.name, v] as const))("%s", async (_name, v) => {
    const key = fromHex(v.key, "key");
    const plaintext =
      v.plaintext === undefined
        ? pattern(v.plaintextPatternLength ?? 0)
        : fromHex(v.plaintext, "pt");
    const slots = v.slots.map((s) => ({ type: s.type, data: fromHex(s.data, "slot") }));
    const random = fixedRandom(fromHex(v.nonce, "nonce"));
    const ciphertext = encryptBlob(key, plaintext, { slots, random });
    expect(ciphertext.length).toBe(v.ciphertextLength);
    expect(sha256(ciphertext)).toBe(v.ciphertextSha256);
    if (v.ciphertext !== undefined) {
      expect(toHex(ciphertext)).toBe(v.ciphertext);
      expectSameBytes(decryptBlob(key, fromHex(v.ciphertext, "ct")), plaintext);
    }
    const streamed = await run(createBlobEncryptStream({ key, slots, random }), [plaintext]);
    expect(sha256(streamed)).toBe(v.ciphertextSha256);
    expectSameBytes(decryptBlob(key, streamed), plaintext);
  });
});

describe("blob memory", () => {
  // V8 frees Buffer memory lazily, so measure what stays reachable: force a collection before
  // each sample. `--expose-gc` can be switched on at run time and read from a fresh context.
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;

  it("streams 64 MiB through encrypt and decrypt with bounded memory", async () => {
    const total = 64 * 1024 * 1024;
    const piece = Buffer.from(pattern(100_003));
    const pieces = function* () {
      for (let sent = 0; sent < total; sent += piece.length) {
        yield piece.subarray(0, Math.min(piece.length, total - sent));
      }
    };
    const used = () => {
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const key = generateBlobKey();
    const enc = createBlobEncryptStream({ key });
    const dec = createBlobDecryptStream({ key });
    const hash = createHash("sha256");
    const baseline = used();
    const firstHalf: number[] = [];
    const secondHalf: number[] = [];
    let chunks = 0;
    await pipeline(Readable.from(pieces()), enc, dec, async (plain) => {
      for await (const chunk of plain as AsyncIterable<Buffer>) {
        hash.update(chunk);
        if (++chunks % 32 === 0) {
          (dec.plaintextBytes <= total / 2 ? firstHalf : secondHalf).push(used() - baseline);
        }
      }
    });
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? 0;
    const peak = Math.max(...firstHalf, ...secondHalf);
    expect(dec.plaintextBytes).toBe(total);
    expect(enc.ciphertextBytes).toBe(blobCiphertextSize(total));
    expect(dec.digest()).toEqual(enc.digest());
    const expected = createHash("sha256");
    for (const p of pieces()) expected.update(p);
    expect(hash.digest("hex")).toBe(expected.digest("hex"));
    expect(chunks).toBeGreaterThan(500);
    // Bounded, not proportional to the data: well under the 64 MiB streamed (stream buffers and
    // the collector's timing under a loaded test run account for the slack), and no growth
    // from the first to the second half of the stream: the medians of the samples (a single
    // late sample can catch buffers in flight) stay within that slack, where memory that grew
    // with the data would move the median by 32 MiB.
    expect(firstHalf.length).toBeGreaterThan(5);
    expect(secondHalf.length).toBeGreaterThan(5);
    expect(peak).toBeLessThan(24 * 1024 * 1024);
    expect(median(secondHalf) - median(firstHalf)).toBeLessThan(8 * 1024 * 1024);
  }, 60_000);
});
