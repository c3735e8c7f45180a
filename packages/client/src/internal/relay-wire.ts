import type { RelayRequestInit } from "./relay-connection.ts";

// Hand-written encoders for the client frames every message costs (a submission per send, an
// acknowledgement per batch received), writing straight into one buffer of the exact size. They
// produce the bytes protobuf-es produces for the same ClientFrame (proto3: zero values omitted,
// fields in number order, repeated scalars packed); relay-wire.test.ts checks them against it.
// Field numbers are relay.proto's. Anything else, or an id past 2^53, goes through protobuf-es.

type SubmitInit = Extract<RelayRequestInit, { case: "submitMessage" }>["value"];
type AckInit = Extract<RelayRequestInit, { case: "ack" }>["value"];

/** ClientFrame.submit_message = 20 and .ack = 21, length-delimited: two-byte keys. */
const SUBMIT_KEY = [0xa2, 0x01] as const;
const ACK_KEY = [0xaa, 0x01] as const;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function putVarint(buf: Uint8Array, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/** UTF-8 length of `s`: its length when ASCII (ids are), else counted by Buffer. */
function utf8Length(s: string): number {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s, "utf8");
  }
  return s.length;
}

const delimited = (length: number) => 1 + varintSize(length) + length;
const optionalDelimited = (length: number) => (length === 0 ? 0 : delimited(length));
const optionalVarint = (n: number) => (n === 0 ? 0 : 1 + varintSize(n));

/** A uint32 field as protobuf-es writes it (values outside 0..2^32-1 are not ours to fix). */
const isUint32 = (n: number) => Number.isInteger(n) && n >= 0 && n <= 0xffffffff;

/** A writer over one exact-size buffer. */
class Writer {
  readonly buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }
  byte(b: number): void {
    this.buf[this.pos++] = b;
  }
  varint(n: number): void {
    this.pos = putVarint(this.buf, this.pos, n);
  }
  /** A varint field (key, value); nothing for zero. */
  uint(field: number, n: number): void {
    if (n === 0) return;
    this.byte(field << 3);
    this.varint(n);
  }
  /** A length-delimited field's key and length. */
  prefix(field: number, length: number): void {
    this.byte((field << 3) | 2);
    this.varint(length);
  }
  /** A string field of UTF-8 length `length`; nothing for an empty string. */
  string(field: number, s: string, length: number): void {
    if (length === 0) return;
    this.prefix(field, length);
    if (length === s.length) {
      for (let i = 0; i < length; i++) this.buf[this.pos + i] = s.charCodeAt(i);
    } else {
      this.buf.write(s, this.pos, length, "utf8");
    }
    this.pos += length;
  }
  bytes(field: number, b: Uint8Array): void {
    if (b.length === 0) return;
    this.prefix(field, b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  done(): Uint8Array {
    if (this.pos !== this.buf.length) throw new Error("relay frame size mismatch");
    return new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.pos);
  }
}

/** ClientFrame { id, submit_message } bytes, or undefined when the fast path does not apply. */
function encodeSubmit(id: number, submit: SubmitInit): Uint8Array | undefined {
  const messageId = submit.messageId ?? "";
  const messageIdLength = utf8Length(messageId);
  const copies = submit.copies ?? [];
  const copySizes: number[] = [];
  const accountLengths: number[] = [];
  let size = optionalDelimited(messageIdLength);
  for (const c of copies) {
    const deviceId = c.deviceId ?? 0;
    const registrationId = c.registrationId ?? 0;
    const type = c.type ?? 0;
    if (!isUint32(deviceId) || !isUint32(registrationId) || !isUint32(type)) return undefined;
    const accountLength = utf8Length(c.accountId ?? "");
    const copySize =
      optionalDelimited(accountLength) +
      optionalVarint(deviceId) +
      optionalVarint(registrationId) +
      optionalVarint(type) +
      optionalDelimited(c.body?.length ?? 0);
    accountLengths.push(accountLength);
    copySizes.push(copySize);
    size += delimited(copySize);
  }
  if (submit.urgent === true) size += 2;
  if (submit.targeted === true) size += 2;
  if (submit.federated === true) size += 2;
  const w = new Writer(optionalVarint(id) + 2 + varintSize(size) + size);
  w.uint(1, id);
  w.byte(SUBMIT_KEY[0]);
  w.byte(SUBMIT_KEY[1]);
  w.varint(size);
  w.string(1, messageId, messageIdLength);
  copies.forEach((c, i) => {
    w.prefix(2, copySizes[i] ?? 0);
    w.string(1, c.accountId ?? "", accountLengths[i] ?? 0);
    w.uint(2, c.deviceId ?? 0);
    w.uint(3, c.registrationId ?? 0);
    w.uint(4, c.type ?? 0);
    if (c.body) w.bytes(5, c.body);
  });
  if (submit.urgent === true) w.uint(3, 1);
  if (submit.targeted === true) w.uint(4, 1);
  if (submit.federated === true) w.uint(5, 1);
  return w.done();
}

/** ClientFrame { id, ack } bytes (seqs packed), or undefined when the fast path does not apply. */
function encodeAck(id: number, ack: AckInit): Uint8Array | undefined {
  const seqs: number[] = [];
  for (const s of ack.seqs ?? []) {
    const n = Number(s);
    if (!Number.isSafeInteger(n) || n < 0) return undefined;
    seqs.push(n);
  }
  let packed = 0;
  for (const n of seqs) packed += varintSize(n);
  const size = packed === 0 ? 0 : delimited(packed);
  const w = new Writer(optionalVarint(id) + 2 + varintSize(size) + size);
  w.uint(1, id);
  w.byte(ACK_KEY[0]);
  w.byte(ACK_KEY[1]);
  w.varint(size);
  if (packed > 0) {
    w.prefix(1, packed);
    for (const n of seqs) w.varint(n);
  }
  return w.done();
}

/**
 * The bytes of ClientFrame `{ id, request }` for the hot-path requests (submitMessage, ack), or
 * undefined: the caller then encodes with protobuf-es.
 */
export function encodeHotClientFrame(
  id: bigint,
  request: RelayRequestInit,
): Uint8Array | undefined {
  const n = Number(id);
  if (!Number.isSafeInteger(n) || n < 0) return undefined;
  if (request.case === "submitMessage") return encodeSubmit(n, request.value);
  if (request.case === "ack") return encodeAck(n, request.value);
  return undefined;
}
