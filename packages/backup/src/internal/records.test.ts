import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BackupError } from "./errors.ts";
import { RecordFramer, decodeRecords, encodeRecords, type BackupRecord } from "./records.ts";

async function collect(records: BackupRecord[]): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const b of encodeRecords(records)) out.push(b);
  return Buffer.concat(out);
}

/** The archive format written out field by field, as the README states it. */
function specBytes(records: BackupRecord[]): Buffer {
  const parts: Buffer[] = [];
  for (const r of records) {
    const table = Buffer.from(r.table, "utf8");
    const key = Buffer.from(r.key, "utf8");
    const head = Buffer.alloc(1 + 1 + table.length + 2 + key.length + 4);
    head[0] = 0x01;
    head[1] = table.length;
    table.copy(head, 2);
    head.writeUInt16BE(key.length, 2 + table.length);
    key.copy(head, 4 + table.length);
    head.writeUInt32BE(r.value.length, 4 + table.length + key.length);
    parts.push(head, Buffer.from(r.value));
  }
  const end = Buffer.alloc(9);
  end[0] = 0x02;
  end.writeBigUInt64BE(BigInt(records.length), 1);
  return Buffer.concat([...parts, end]);
}

function frame(records: BackupRecord[], chunkSize: number) {
  const chunks: Array<{ bytes: Buffer; last: boolean }> = [];
  const framer = new RecordFramer(chunkSize, (chunk, last) =>
    chunks.push({ bytes: Buffer.from(chunk), last }),
  );
  for (const r of records) framer.push(r);
  framer.end();
  return { chunks, stats: framer.stats };
}

const record = fc.record({
  table: fc.constantFrom("app", "session", "contact-key", "tablé"),
  key: fc.string({ maxLength: 40 }),
  value: fc.uint8Array({ maxLength: 300 }),
});

describe("RecordFramer", () => {
  it("frames exactly the archive format (as encodeRecords does), in full chunks with only the last shorter", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(record, { maxLength: 40 }),
        fc.integer({ min: 1, max: 700 }),
        async (records, size) => {
          const { chunks, stats } = frame(records, size);
          const expected = specBytes(records);
          expect(Buffer.concat(chunks.map((c) => c.bytes)).equals(expected)).toBe(true);
          expect((await collect(records)).equals(expected)).toBe(true);
          expect(chunks.map((c) => c.last)).toEqual(chunks.map((_, i) => i === chunks.length - 1));
          for (const c of chunks.slice(0, -1)) expect(c.bytes.length).toBe(size);
          const lastChunk = chunks.at(-1);
          expect(lastChunk?.bytes.length).toBeGreaterThan(0);
          expect(lastChunk?.bytes.length).toBeLessThanOrEqual(size);
          expect(stats.records).toBe(records.length);
          const decoded: BackupRecord[] = [];
          const source = (async function* () {
            for (const c of chunks) yield await Promise.resolve(c.bytes);
          })();
          for await (const r of decodeRecords(source)) decoded.push(r);
          expect(
            decoded.map((r) => [r.table, r.key, Buffer.from(r.value).toString("hex")]),
          ).toEqual(records.map((r) => [r.table, r.key, Buffer.from(r.value).toString("hex")]));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("hands a chunk the end frame fills exactly over as the last one, not an empty one after it", () => {
    // One record of 1 + 1 + 3 + 2 + 1 + 4 + 10 = 22 bytes, then the 9-byte end frame: 31 bytes.
    const { chunks } = frame([{ table: "app", key: "k", value: randomBytes(10) }], 31);
    expect(chunks.map((c) => [c.bytes.length, c.last])).toEqual([[31, true]]);
  });

  it("refuses an oversized table name or key before framing anything of it", () => {
    const chunks: Buffer[] = [];
    const framer = new RecordFramer(64, (c) => chunks.push(Buffer.from(c)));
    const tooLarge = (r: BackupRecord) => {
      try {
        framer.push(r);
        return "accepted";
      } catch (err) {
        return BackupError.is(err, "InvalidArgument") ? "refused" : "other";
      }
    };
    expect(tooLarge({ table: "t".repeat(256), key: "k", value: new Uint8Array(0) })).toBe(
      "refused",
    );
    expect(tooLarge({ table: "é".repeat(128), key: "k", value: new Uint8Array(0) })).toBe(
      "refused",
    );
    expect(tooLarge({ table: "app", key: "k".repeat(65_536), value: new Uint8Array(0) })).toBe(
      "refused",
    );
    expect(framer.stats.records).toBe(0);
    framer.end();
    expect(Buffer.concat(chunks).length).toBe(9);
  });
});
