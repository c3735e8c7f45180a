import { BackupError } from "./errors.ts";

/**
 * One record of a backup: a key and value of one table of device state. What the tables mean is
 * up to the layer that selects them (see `selectDeviceRecords`); the archive only frames them.
 */
export interface BackupRecord {
  readonly table: string;
  readonly key: string;
  readonly value: Uint8Array;
}

/** Largest value a record may carry (a bigger frame is taken as corruption). */
export const MAX_RECORD_VALUE_BYTES = 16 * 1024 * 1024;

const TAG_RECORD = 1;
const TAG_END = 2;
const BATCH_BYTES = 64 * 1024;

/**
 * Frames records as bytes, in ~64 KiB buffers (a {@link RecordFramer} underneath):
 * record = 0x01 ‖ u8 table length ‖ table ‖ u16 key length ‖ key ‖ u32 value length ‖ value;
 * after the last record, end = 0x02 ‖ u64 record count. Throws `BackupError("InvalidArgument")`
 * for a table name over 255 bytes, a key over 65535 bytes or a value over the limit.
 */
export async function* encodeRecords(
  records: AsyncIterable<BackupRecord> | Iterable<BackupRecord>,
  stats: { records: number; bytes: number; tables?: Record<string, number> } = {
    records: 0,
    bytes: 0,
  },
): AsyncGenerator<Buffer> {
  const ready: Buffer[] = [];
  // The framer lends its chunk for the call only: each batch is copied out.
  const framer = new RecordFramer(BATCH_BYTES, (chunk) => ready.push(Buffer.from(chunk)));
  const tables = stats.tables;
  // A sync source is read without an await per record (a microtask each adds up at 1 GiB).
  const source: Iterable<BackupRecord> | AsyncIterable<BackupRecord> = records;
  const iterate =
    Symbol.iterator in source ? source[Symbol.iterator]() : source[Symbol.asyncIterator]();
  for (;;) {
    const step = iterate.next();
    const next = step instanceof Promise ? await step : step;
    if (next.done === true) break;
    const r = next.value;
    const before = framer.stats.bytes;
    framer.push(r);
    stats.records++;
    stats.bytes += framer.stats.bytes - before;
    if (tables) tables[r.table] = (tables[r.table] ?? 0) + 1;
    while (ready.length > 0) yield ready.shift() as Buffer;
  }
  const before = framer.stats.bytes;
  framer.end();
  stats.bytes += framer.stats.bytes - before;
  yield* ready;
}

/**
 * Frames records (the format of {@link encodeRecords}) straight into fixed-size chunks, with no
 * intermediate buffers: `onChunk(chunk, last)` gets each chunk in order, every one but the last
 * exactly `chunkSize` bytes. The chunk is lent for the call only (the framer reuses it). A full
 * chunk is held back until another byte follows, so the last chunk is only ever empty when
 * nothing at all was framed (never here: the end frame always follows). Throws
 * `BackupError("InvalidArgument")` like {@link encodeRecords}, before writing the record.
 */
export class RecordFramer {
  readonly stats: { records: number; bytes: number; tables: Record<string, number> } = {
    records: 0,
    bytes: 0,
    tables: {},
  };
  private readonly chunk: Buffer;
  private fill = 0;
  private readonly head = Buffer.allocUnsafe(1 + 1 + 255 + 2 + 65_535 + 4);
  private ended = false;

  constructor(
    private readonly chunkSize: number,
    private readonly onChunk: (chunk: Buffer, last: boolean) => void,
  ) {
    this.chunk = Buffer.allocUnsafe(chunkSize);
  }

  push(r: BackupRecord): void {
    if (this.ended) throw new BackupError("InvalidArgument", "the archive has ended");
    const head = this.head;
    // Table and key are written where they go and measured there (no intermediate buffers).
    const tableLength = head.write(r.table, 2, 256, "utf8");
    if (Buffer.byteLength(r.table, "utf8") > 255) throw tooLarge();
    const keyAt = 2 + tableLength + 2;
    const keyLength = head.write(r.key, keyAt, 65_536, "utf8");
    if (keyLength > 65_535 || Buffer.byteLength(r.key, "utf8") !== keyLength) throw tooLarge();
    if (r.value.length > MAX_RECORD_VALUE_BYTES) throw tooLarge();
    head[0] = TAG_RECORD;
    head[1] = tableLength;
    head.writeUInt16BE(keyLength, 2 + tableLength);
    head.writeUInt32BE(r.value.length, keyAt + keyLength);
    const headLength = keyAt + keyLength + 4;
    this.write(head, headLength);
    this.write(r.value, r.value.length);
    this.stats.records++;
    this.stats.bytes += headLength + r.value.length;
    this.stats.tables[r.table] = (this.stats.tables[r.table] ?? 0) + 1;
  }

  /** Writes the end frame and hands over the last chunk. */
  end(): void {
    if (this.ended) return;
    const end = Buffer.alloc(9);
    end[0] = TAG_END;
    end.writeBigUInt64BE(BigInt(this.stats.records), 1);
    this.write(end, end.length);
    this.stats.bytes += end.length;
    this.ended = true;
    this.onChunk(this.chunk.subarray(0, this.fill), true);
  }

  private write(bytes: Uint8Array, length: number): void {
    let at = 0;
    while (at < length) {
      if (this.fill === this.chunkSize) {
        this.onChunk(this.chunk, false);
        this.fill = 0;
      }
      const n = Math.min(length - at, this.chunkSize - this.fill);
      this.chunk.set(
        at === 0 && n === bytes.length ? bytes : bytes.subarray(at, at + n),
        this.fill,
      );
      this.fill += n;
      at += n;
    }
  }
}

function tooLarge(): BackupError {
  return new BackupError("InvalidArgument", "a backup record is too large");
}

/**
 * Parses framed records from decrypted bytes. Throws `BackupError("Tampered")` for a bad frame,
 * bytes after the end frame, a missing end frame or a record count that disagrees. Only bytes
 * that already authenticated reach it, so a failure here means the writer was not ours.
 */
export async function* decodeRecords(chunks: AsyncIterable<Buffer>): AsyncGenerator<BackupRecord> {
  let buf: Buffer = Buffer.alloc(0);
  let count = 0;
  let ended = false;
  for await (const chunk of chunks) {
    if (ended) {
      if (chunk.length > 0) throw bad("data after the end of the archive");
      continue;
    }
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    let o = 0;
    for (;;) {
      if (buf.length - o < 1) break;
      const tag = buf[o];
      if (tag === TAG_END) {
        if (buf.length - o < 9) break;
        if (buf.readBigUInt64BE(o + 1) !== BigInt(count)) throw bad("record count mismatch");
        if (buf.length - o > 9) throw bad("data after the end of the archive");
        ended = true;
        o = buf.length;
        break;
      }
      if (tag !== TAG_RECORD) throw bad("unknown frame");
      if (buf.length - o < 2) break;
      const tableLength = buf[o + 1] ?? 0;
      const keyAt = o + 2 + tableLength;
      if (buf.length < keyAt + 2) break;
      const keyLength = buf.readUInt16BE(keyAt);
      const valueAt = keyAt + 2 + keyLength + 4;
      if (buf.length < valueAt) break;
      const valueLength = buf.readUInt32BE(valueAt - 4);
      if (valueLength > MAX_RECORD_VALUE_BYTES) throw bad("record too large");
      if (buf.length < valueAt + valueLength) break;
      yield {
        table: buf.toString("utf8", o + 2, keyAt),
        key: buf.toString("utf8", keyAt + 2, valueAt - 4),
        value: new Uint8Array(buf.subarray(valueAt, valueAt + valueLength)),
      };
      count++;
      o = valueAt + valueLength;
    }
    buf = o === buf.length ? Buffer.alloc(0) : buf.subarray(o);
  }
  if (!ended) throw bad("archive has no end frame");
}

function bad(what: string): BackupError {
  return new BackupError("Tampered", `backup archive is malformed: ${what}`);
}
