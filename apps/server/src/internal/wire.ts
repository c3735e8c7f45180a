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

const utf8 = new TextEncoder();

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
  const account = utf8.encode(fields.senderAccount);
  const group = utf8.encode(fields.groupId ?? "");
  const messageId = utf8.encode(fields.messageId);
  const varintField = (n: number) => (n === 0 ? 0 : 1 + varintSize(n));
  const bytesField = (b: Uint8Array) => (b.length === 0 ? 0 : delimitedSize(b.length));
  const size =
    bytesField(account) +
    varintField(fields.senderDevice) +
    varintField(fields.type) +
    bytesField(fields.body) +
    bytesField(group) +
    bytesField(messageId) +
    varintField(fields.serverTimestamp);
  const buf = new Uint8Array(size);
  let pos = 0;
  const putBytes = (field: number, b: Uint8Array) => {
    if (b.length === 0) return;
    pos = putLengthPrefix(buf, pos, field, b.length);
    buf.set(b, pos);
    pos += b.length;
  };
  const putUint = (field: number, n: number) => {
    if (n === 0) return;
    buf[pos++] = field << 3;
    pos = putVarint(buf, pos, n);
  };
  putBytes(2, account);
  putUint(3, fields.senderDevice);
  putUint(4, fields.type);
  putBytes(5, fields.body);
  putBytes(6, group);
  putBytes(7, messageId);
  putUint(8, fields.serverTimestamp);
  return buf;
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
