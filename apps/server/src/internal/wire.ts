import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ClientFrameSchema,
  ServerFrameSchema,
  type ClientFrame,
  type PushSchema,
  type ResponseSchema,
} from "@pairwise/core/relay-proto";
import { ServerError } from "./errors.ts";

/** Decodes one client frame; `ServerError("InvalidRequest")` for anything that is not one. */
export function decodeClientFrame(bytes: Uint8Array): ClientFrame {
  try {
    return fromBinary(ClientFrameSchema, bytes, { readUnknownFields: false });
  } catch {
    throw new ServerError("InvalidRequest", "frame is not a valid ClientFrame");
  }
}

/** Encodes a response frame. */
export function encodeResponse(response: MessageInitShape<typeof ResponseSchema>): Uint8Array {
  return toBinary(
    ServerFrameSchema,
    create(ServerFrameSchema, { kind: { case: "response", value: response } }),
  );
}

/** Encodes a push frame. */
export function encodePush(push: MessageInitShape<typeof PushSchema>): Uint8Array {
  return toBinary(
    ServerFrameSchema,
    create(ServerFrameSchema, { kind: { case: "push", value: push } }),
  );
}

// Hand-written encoders for the three frames on the hot path (every message is one Envelope, one
// SubmitResult and one Envelope push), writing straight into one buffer of the exact size. They
// produce the bytes protobuf-es produces (proto3: zero values omitted); wire.test.ts checks them
// against it. Field numbers are relay.proto's.

/** Bytes of a varint for a non-negative integer up to 2^53. */
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

/** A length-delimited field's key and length prefix (the caller copies the payload after it). */
function putLengthPrefix(buf: Uint8Array, pos: number, field: number, length: number): number {
  buf[pos++] = (field << 3) | 2;
  return putVarint(buf, pos, length);
}

const delimitedSize = (length: number) => 1 + varintSize(length) + length;

/** UTF-8 length of `s` (its length when ASCII, the common case for ids, counted without a copy). */
function utf8Length(s: string): number {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s, "utf8");
  }
  return s.length;
}

/** A string field (key, length, UTF-8 bytes) written in place; nothing for an empty string. */
function putString(buf: Buffer, pos: number, field: number, s: string, length: number): number {
  if (length === 0) return pos;
  pos = putLengthPrefix(buf, pos, field, length);
  if (length === s.length) {
    for (let i = 0; i < length; i++) buf[pos + i] = s.charCodeAt(i);
  } else {
    buf.write(s, pos, length, "utf8");
  }
  return pos + length;
}

/** Envelope bytes as queued: every field but `seq` (delivery appends it). */
export function encodeQueuedEnvelope(fields: {
  senderAccount: string;
  senderDevice: number;
  type: number;
  body: Uint8Array;
  groupId?: string;
  messageId: string;
  serverTimestamp: number;
}): Uint8Array {
  // Strings are measured, then written straight into the one buffer (no encoder copies: this
  // runs once per queued copy).
  const group = fields.groupId ?? "";
  const accountLength = utf8Length(fields.senderAccount);
  const groupLength = utf8Length(group);
  const messageIdLength = utf8Length(fields.messageId);
  const varintField = (n: number) => (n === 0 ? 0 : 1 + varintSize(n));
  const lengthField = (n: number) => (n === 0 ? 0 : delimitedSize(n));
  const size =
    lengthField(accountLength) +
    varintField(fields.senderDevice) +
    varintField(fields.type) +
    lengthField(fields.body.length) +
    lengthField(groupLength) +
    lengthField(messageIdLength) +
    varintField(fields.serverTimestamp);
  const buf = Buffer.allocUnsafe(size);
  const putUint = (pos: number, field: number, n: number) => {
    if (n === 0) return pos;
    buf[pos++] = field << 3;
    return putVarint(buf, pos, n);
  };
  let pos = putString(buf, 0, 2, fields.senderAccount, accountLength);
  pos = putUint(pos, 3, fields.senderDevice);
  pos = putUint(pos, 4, fields.type);
  if (fields.body.length > 0) {
    pos = putLengthPrefix(buf, pos, 5, fields.body.length);
    buf.set(fields.body, pos);
    pos += fields.body.length;
  }
  pos = putString(buf, pos, 6, group, groupLength);
  pos = putString(buf, pos, 7, fields.messageId, messageIdLength);
  pos = putUint(pos, 8, fields.serverTimestamp);
  if (pos !== size) throw new ServerError("Internal", "envelope size mismatch");
  return new Uint8Array(buf.buffer, buf.byteOffset, size);
}

/**
 * Wraps stored Envelope bytes (encoded without `seq`) into a ServerFrame push, appending the
 * queue seq as field 1 — protobuf allows fields in any order — so the hot delivery path copies
 * bytes instead of decoding and re-encoding every message.
 */
export function encodeEnvelopePush(envelopeWithoutSeq: Uint8Array, seq: number): Uint8Array {
  const envelopeSize = envelopeWithoutSeq.length + (seq === 0 ? 0 : 1 + varintSize(seq));
  const pushSize = delimitedSize(envelopeSize);
  const buf = new Uint8Array(delimitedSize(pushSize));
  let pos = putLengthPrefix(buf, 0, 2, pushSize); // ServerFrame.push
  pos = putLengthPrefix(buf, pos, 1, envelopeSize); // Push.envelope
  buf.set(envelopeWithoutSeq, pos);
  pos += envelopeWithoutSeq.length;
  if (seq !== 0) {
    buf[pos++] = 1 << 3; // Envelope.seq
    putVarint(buf, pos, seq);
  }
  return buf;
}

/** A ServerFrame answering a submission: Response { id, submit: SubmitResult }. */
export function encodeSubmitResponse(
  id: bigint,
  serverTimestamp: number,
  duplicate: boolean,
): Uint8Array {
  const idNumber = Number(id);
  if (!Number.isSafeInteger(idNumber)) {
    return encodeResponse({
      id,
      result: { case: "submit", value: { serverTimestamp: BigInt(serverTimestamp), duplicate } },
    });
  }
  const resultSize =
    (serverTimestamp === 0 ? 0 : 1 + varintSize(serverTimestamp)) + (duplicate ? 2 : 0);
  const responseSize =
    (idNumber === 0 ? 0 : 1 + varintSize(idNumber)) + 2 + varintSize(resultSize) + resultSize;
  const buf = new Uint8Array(delimitedSize(responseSize));
  let pos = putLengthPrefix(buf, 0, 1, responseSize); // ServerFrame.response
  if (idNumber !== 0) {
    buf[pos++] = 1 << 3; // Response.id
    pos = putVarint(buf, pos, idNumber);
  }
  // Response.submit = 16, length-delimited: the key 130 as a two-byte varint.
  buf[pos++] = 0x82;
  buf[pos++] = 0x01;
  pos = putVarint(buf, pos, resultSize);
  if (serverTimestamp !== 0) {
    buf[pos++] = 1 << 3; // SubmitResult.server_timestamp
    pos = putVarint(buf, pos, serverTimestamp);
  }
  if (duplicate) {
    buf[pos++] = 2 << 3; // SubmitResult.duplicate
    buf[pos++] = 1;
  }
  return buf;
}
