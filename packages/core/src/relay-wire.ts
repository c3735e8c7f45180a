// Hand-written codecs for the relay frames every message costs: on the device, a submission per
// send, an acknowledgement per batch received, a SubmitResult and an Envelope push per message;
// on the relay, the same frames the other way round. protobuf-es handles every other frame.
//
// Encoders write straight into one buffer of the exact size and produce the bytes protobuf-es
// produces (proto3: zero values omitted, fields in number order, repeated scalars packed).
// Decoders read only the layouts these encoders write and return `undefined` for anything else
// (another request, an unknown or repeated field, an unpacked list, a varint past 2^53, a
// non-ASCII string, or malformed bytes): the caller then decodes with protobuf-es, which decides
// what is valid. Where they decode, they return what protobuf-es `fromBinary` returns, field for
// field (bytes fields are views into the input, as there). relay-wire.test.ts checks both
// directions against protobuf-es. Field numbers are relay.proto's.
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  AckSchema,
  ClientFrameSchema,
  DeviceCiphertextSchema,
  EnvelopeSchema,
  PushSchema,
  ResponseSchema,
  ServerFrameSchema,
  SubmitMessageSchema,
  SubmitResultSchema,
  type ClientFrame,
  type DeviceCiphertext,
  type Envelope,
  type ServerFrame,
  type SubmitMessage,
} from "./gen/relay_pb.ts";

/** A request as a device builds it (protobuf-es init shape of the ClientFrame `request` oneof). */
export type RelayRequestInit = Exclude<
  MessageInitShape<typeof ClientFrameSchema>["request"],
  { case: undefined } | undefined
>;
type SubmitInit = Extract<RelayRequestInit, { case: "submitMessage" }>["value"];
type AckInit = Extract<RelayRequestInit, { case: "ack" }>["value"];

// ---------------------------------------------------------------------------------- writing

/** Bytes of a varint for a non-negative integer up to 2^53. */
export function varintSize(n: number): number {
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
  /** A string field of UTF-8 length `length`, written in place; nothing for an empty string. */
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

/** ClientFrame.submit_message = 20 and .ack = 21, Response.submit = 16: two-byte keys. */
const SUBMIT_KEY = [0xa2, 0x01] as const;
const ACK_KEY = [0xaa, 0x01] as const;
const SUBMIT_RESULT_KEY = [0x82, 0x01] as const;

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

/** The Envelope fields the relay queues (every field but `seq`, which delivery appends). */
export interface QueuedEnvelopeFields {
  senderAccount: string;
  senderDevice: number;
  type: number;
  body: Uint8Array;
  groupId?: string;
  messageId: string;
  serverTimestamp: number;
}

/** Envelope bytes as queued: every field but `seq` (delivery appends it). */
export function encodeQueuedEnvelope(fields: QueuedEnvelopeFields): Uint8Array {
  const group = fields.groupId ?? "";
  const accountLength = utf8Length(fields.senderAccount);
  const groupLength = utf8Length(group);
  const messageIdLength = utf8Length(fields.messageId);
  const w = new Writer(
    optionalDelimited(accountLength) +
      optionalVarint(fields.senderDevice) +
      optionalVarint(fields.type) +
      optionalDelimited(fields.body.length) +
      optionalDelimited(groupLength) +
      optionalDelimited(messageIdLength) +
      optionalVarint(fields.serverTimestamp),
  );
  w.string(2, fields.senderAccount, accountLength);
  w.uint(3, fields.senderDevice);
  w.uint(4, fields.type);
  w.bytes(5, fields.body);
  w.string(6, group, groupLength);
  w.string(7, fields.messageId, messageIdLength);
  w.uint(8, fields.serverTimestamp);
  return w.done();
}

/**
 * Wraps stored Envelope bytes (encoded without `seq`) into a ServerFrame push, appending the
 * queue seq as field 1 — protobuf allows fields in any order — so the hot delivery path copies
 * bytes instead of decoding and re-encoding every message.
 */
export function encodeEnvelopePush(envelopeWithoutSeq: Uint8Array, seq: number): Uint8Array {
  const envelopeSize = envelopeWithoutSeq.length + optionalVarint(seq);
  const pushSize = delimited(envelopeSize);
  const w = new Writer(delimited(pushSize));
  w.prefix(2, pushSize); // ServerFrame.push
  w.prefix(1, envelopeSize); // Push.envelope
  w.buf.set(envelopeWithoutSeq, w.pos);
  w.pos += envelopeWithoutSeq.length;
  w.uint(1, seq); // Envelope.seq
  return w.done();
}

/**
 * A ServerFrame answering a submission, Response { id, submit: SubmitResult }, or undefined for
 * an id past 2^53 (the caller encodes with protobuf-es).
 */
export function encodeSubmitResponse(
  id: bigint,
  serverTimestamp: number,
  duplicate: boolean,
): Uint8Array | undefined {
  const idNumber = Number(id);
  if (!Number.isSafeInteger(idNumber) || idNumber < 0) return undefined;
  const resultSize = optionalVarint(serverTimestamp) + (duplicate ? 2 : 0);
  const responseSize = optionalVarint(idNumber) + 2 + varintSize(resultSize) + resultSize;
  const w = new Writer(delimited(responseSize));
  w.prefix(1, responseSize); // ServerFrame.response
  w.uint(1, idNumber); // Response.id
  w.byte(SUBMIT_RESULT_KEY[0]);
  w.byte(SUBMIT_RESULT_KEY[1]);
  w.varint(resultSize);
  w.uint(1, serverTimestamp); // SubmitResult.server_timestamp
  if (duplicate) w.uint(2, 1); // SubmitResult.duplicate
  return w.done();
}

// ---------------------------------------------------------------------------------- reading

/** Thrown inside a decoder when the fast path does not apply; never escapes this module. */
class NotHot extends Error {}
/** One instance, made once: throwing it costs no stack trace. */
const NOT_HOT = new NotHot("not a hot-path frame");
/** Decodes bytes already checked to be ASCII (which Latin-1, or Windows-1252 as WHATWG has it, maps one to one). */
const LATIN1 = new TextDecoder("latin1");
/**
 * Up to this length an ASCII string is built a character at a time (V8 copies such short
 * strings flat, and a decoder call costs more); a longer one, such as a UUID message id, is
 * decoded in one piece, since appending would build a chain of V8 cons strings that every later
 * use flattens and every survivor of a minor GC drags along.
 */
const SHORT_STRING = 12;

/** A reader over `buf[pos, end)` that gives up (throws NOT_HOT) on anything unusual. */
class Reader {
  constructor(
    readonly buf: Uint8Array,
    public pos: number,
    readonly end: number,
  ) {}
  more(): boolean {
    return this.pos < this.end;
  }
  /** A varint up to 2^53 - 1 (longer or larger: NOT_HOT). */
  varint(): number {
    let n = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.end) throw NOT_HOT;
      const b = this.buf[this.pos++] ?? 0;
      n += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (!Number.isSafeInteger(n) || (i > 0 && b === 0)) throw NOT_HOT;
        return n;
      }
      scale *= 128;
    }
    throw NOT_HOT;
  }
  uint32(): number {
    const n = this.varint();
    if (n > 0xffffffff) throw NOT_HOT;
    return n;
  }
  bool(): boolean {
    const n = this.varint();
    if (n > 1) throw NOT_HOT;
    return n === 1;
  }
  /** A length-delimited payload's bounds; the reader moves past it. */
  span(): [number, number] {
    const length = this.varint();
    const start = this.pos;
    if (length > this.end - start) throw NOT_HOT;
    this.pos = start + length;
    return [start, this.pos];
  }
  /** A string field: ASCII only (ids are), else NOT_HOT for protobuf-es to decode. */
  ascii(): string {
    const [start, end] = this.span();
    if (end - start > SHORT_STRING) {
      for (let i = start; i < end; i++) if ((this.buf[i] ?? 0) >= 0x80) throw NOT_HOT;
      return LATIN1.decode(this.buf.subarray(start, end));
    }
    let s = "";
    for (let i = start; i < end; i++) {
      const c = this.buf[i] ?? 0;
      if (c >= 0x80) throw NOT_HOT;
      s += String.fromCharCode(c);
    }
    return s;
  }
  bytes(): Uint8Array {
    const [start, end] = this.span();
    return this.buf.subarray(start, end);
  }
  /** A nested reader over a length-delimited payload. */
  nested(): Reader {
    const [start, end] = this.span();
    return new Reader(this.buf, start, end);
  }
  /** The next key: field number × 8 + wire type (field 20, length-delimited: 0xa2). */
  key(): number {
    return this.varint();
  }
}

/**
 * Runs a decoder; its NOT_HOT means "not a layout of ours": undefined, for protobuf-es to decode.
 */
function orUndefined<T>(decode: () => T): T | undefined {
  try {
    return decode();
  } catch (err) {
    if (err === NOT_HOT) return undefined;
    throw err;
  }
}

/** The optional leading id (field 1, a varint; 0 when absent) and the key after it. */
function idThenKey(r: Reader): { id: number; key: number } {
  const key = r.key();
  if (key !== 0x08) return { id: 0, key };
  const id = r.varint();
  return { id, key: r.key() };
}

/** Each field once at most: `seen` is a bit set of field numbers below 32. */
function once(seen: number, field: number): number {
  const bit = 1 << field;
  if (seen & bit) throw NOT_HOT;
  return seen | bit;
}

function decodeCopy(r: Reader): DeviceCiphertext {
  const copy: DeviceCiphertext = {
    $typeName: DeviceCiphertextSchema.typeName,
    accountId: "",
    deviceId: 0,
    registrationId: 0,
    type: 0,
    body: new Uint8Array(0),
  };
  let seen = 0;
  while (r.more()) {
    const key = r.key();
    seen = once(seen, key >>> 3);
    if (key === 0x0a) copy.accountId = r.ascii();
    else if (key === 0x10) copy.deviceId = r.uint32();
    else if (key === 0x18) copy.registrationId = r.uint32();
    else if (key === 0x20) copy.type = r.uint32();
    else if (key === 0x2a) copy.body = r.bytes();
    else throw NOT_HOT;
  }
  return copy;
}

function decodeSubmit(r: Reader): ClientFrame["request"] {
  const value: SubmitMessage = {
    $typeName: SubmitMessageSchema.typeName,
    messageId: "",
    copies: [],
    urgent: false,
    targeted: false,
    federated: false,
  };
  let seen = 0;
  while (r.more()) {
    const key = r.key();
    if (key === 0x12) {
      value.copies.push(decodeCopy(r.nested()));
      continue;
    }
    seen = once(seen, key >>> 3);
    if (key === 0x0a) value.messageId = r.ascii();
    else if (key === 0x18) value.urgent = r.bool();
    else if (key === 0x20) value.targeted = r.bool();
    else if (key === 0x28) value.federated = r.bool();
    else throw NOT_HOT;
  }
  return { case: "submitMessage", value };
}

function decodeAck(r: Reader): ClientFrame["request"] {
  const seqs: bigint[] = [];
  if (r.more()) {
    if (r.key() !== 0x0a) throw NOT_HOT; // packed seqs, once
    const packed = r.nested();
    while (packed.more()) seqs.push(BigInt(packed.varint()));
    if (r.more()) throw NOT_HOT;
  }
  return { case: "ack", value: { $typeName: AckSchema.typeName, seqs } };
}

/**
 * A ClientFrame carrying submitMessage or ack, decoded by hand, or undefined (any other frame,
 * or a layout the encoders above do not write): decode that with protobuf-es.
 */
export function decodeHotClientFrame(bytes: Uint8Array): ClientFrame | undefined {
  return orUndefined(() => {
    const r = new Reader(bytes, 0, bytes.length);
    const { id, key } = idThenKey(r);
    // Then exactly one request: submit_message (20: key 0xa2) or ack (21: key 0xaa).
    const inner = r.nested();
    if (r.more()) throw NOT_HOT;
    let request: ClientFrame["request"];
    if (key === 0xa2) request = decodeSubmit(inner);
    else if (key === 0xaa) request = decodeAck(inner);
    else throw NOT_HOT;
    return { $typeName: ClientFrameSchema.typeName, id: BigInt(id), request };
  });
}

function decodeEnvelope(r: Reader): ServerFrame["kind"] {
  const envelope: Envelope = {
    $typeName: EnvelopeSchema.typeName,
    seq: 0n,
    senderAccount: "",
    senderDevice: 0,
    type: 0,
    body: new Uint8Array(0),
    groupId: "",
    messageId: "",
    serverTimestamp: 0n,
  };
  let seen = 0;
  while (r.more()) {
    const key = r.key();
    seen = once(seen, key >>> 3);
    if (key === 0x08) envelope.seq = BigInt(r.varint());
    else if (key === 0x12) envelope.senderAccount = r.ascii();
    else if (key === 0x18) envelope.senderDevice = r.uint32();
    else if (key === 0x20) envelope.type = r.uint32();
    else if (key === 0x2a) envelope.body = r.bytes();
    else if (key === 0x32) envelope.groupId = r.ascii();
    else if (key === 0x3a) envelope.messageId = r.ascii();
    else if (key === 0x40) envelope.serverTimestamp = BigInt(r.varint());
    else throw NOT_HOT;
  }
  return {
    case: "push",
    value: { $typeName: PushSchema.typeName, kind: { case: "envelope", value: envelope } },
  };
}

function decodeSubmitResponse(r: Reader): ServerFrame["kind"] {
  const { id, key } = idThenKey(r);
  if (key !== 0x82) throw NOT_HOT; // then the submit result (field 16, key 130), nothing else
  const inner = r.nested();
  if (r.more()) throw NOT_HOT;
  const result = {
    $typeName: SubmitResultSchema.typeName,
    serverTimestamp: 0n,
    duplicate: false,
  };
  let seen = 0;
  while (inner.more()) {
    const k = inner.key();
    seen = once(seen, k >>> 3);
    if (k === 0x08) result.serverTimestamp = BigInt(inner.varint());
    else if (k === 0x10) result.duplicate = inner.bool();
    else throw NOT_HOT;
  }
  return {
    case: "response",
    value: {
      $typeName: ResponseSchema.typeName,
      id: BigInt(id),
      result: { case: "submit", value: result },
    },
  };
}

/**
 * A ServerFrame carrying an Envelope push or a SubmitResult response, decoded by hand, or
 * undefined (any other frame, or a layout the encoders above do not write): decode that with
 * protobuf-es.
 */
export function decodeHotServerFrame(bytes: Uint8Array): ServerFrame | undefined {
  return orUndefined(() => {
    const r = new Reader(bytes, 0, bytes.length);
    const key = r.key();
    const inner = r.nested();
    if (r.more()) throw NOT_HOT;
    let kind: ServerFrame["kind"];
    if (key === 0x12) {
      // Push: exactly one envelope (field 1).
      if (inner.key() !== 0x0a) throw NOT_HOT;
      const envelope = inner.nested();
      if (inner.more()) throw NOT_HOT;
      kind = decodeEnvelope(envelope);
    } else if (key === 0x0a) {
      kind = decodeSubmitResponse(inner);
    } else {
      throw NOT_HOT;
    }
    return { $typeName: ServerFrameSchema.typeName, kind };
  });
}
