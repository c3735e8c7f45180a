import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ClientFrameSchema, EnvelopeSchema, ServerFrameSchema } from "./gen/relay_pb.ts";
import {
  decodeHotClientFrame,
  decodeHotServerFrame,
  encodeEnvelopePush,
  encodeHotClientFrame,
  encodeQueuedEnvelope,
  encodeSubmitResponse,
  type RelayRequestInit,
} from "./relay-wire.ts";

// The hand-written codecs must agree with protobuf-es: the encoders byte for byte, the decoders
// value for value wherever they decode, and they must leave to protobuf-es what they do not.
const text = fc.oneof(
  fc.constant(""),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 20 }),
);
const uint32 = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
const safe = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }));
const id = fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: BigInt(Number.MAX_SAFE_INTEGER) }));
const flag = fc.option(fc.boolean(), { nil: undefined });
const copy = fc.record(
  {
    accountId: text,
    deviceId: uint32,
    registrationId: uint32,
    type: uint32,
    body: fc.uint8Array({ maxLength: 400 }),
  },
  { requiredKeys: [] },
);
const submitRequest = fc
  .record({
    messageId: fc.option(text, { nil: undefined }),
    copies: fc.array(copy, { maxLength: 6 }),
    urgent: flag,
    targeted: flag,
    federated: flag,
  })
  .map(({ messageId, copies, urgent, targeted, federated }): RelayRequestInit => ({
    case: "submitMessage",
    value: {
      ...(messageId === undefined ? {} : { messageId }),
      copies,
      ...(urgent === undefined ? {} : { urgent }),
      ...(targeted === undefined ? {} : { targeted }),
      ...(federated === undefined ? {} : { federated }),
    },
  }));
const ackRequest = fc
  .array(fc.bigInt({ min: 0n, max: BigInt(Number.MAX_SAFE_INTEGER) }), { maxLength: 130 })
  .map((seqs): RelayRequestInit => ({ case: "ack", value: { seqs } }));

/** Whether a string is ASCII (the hot decoders leave other strings to protobuf-es). */
const isAscii = (s: string) => Buffer.byteLength(s) === s.length;

const protobufEs = (frameId: bigint, request: RelayRequestInit) =>
  toBinary(ClientFrameSchema, create(ClientFrameSchema, { id: frameId, request }));

/** What the hot decoder gives, which must be protobuf-es's value where it decodes at all. */
function agreesWithProtobufEs<T>(
  hot: T | undefined,
  generic: () => T,
  mustDecode: boolean,
): boolean {
  let expected: T | undefined;
  let threw = false;
  try {
    expected = generic();
  } catch {
    threw = true;
  }
  if (hot === undefined) {
    expect(mustDecode && !threw).toBe(false);
    return true;
  }
  // Decoding something protobuf-es refuses would let bad input past the server's checks.
  expect(threw).toBe(false);
  expect(hot).toStrictEqual(expected);
  return true;
}

describe("client frames: hand-written codec against protobuf-es", () => {
  it("encodes a submission byte for byte, and decodes it back (ASCII ids) as protobuf-es does", () => {
    fc.assert(
      fc.property(id, submitRequest, (frameId, request) => {
        const bytes = encodeHotClientFrame(frameId, request);
        expect(bytes).toEqual(protobufEs(frameId, request));
        const value = request.case === "submitMessage" ? request.value : {};
        const ascii = isAscii(
          (value.messageId ?? "") + (value.copies ?? []).map((c) => c.accountId ?? "").join(""),
        );
        agreesWithProtobufEs(
          decodeHotClientFrame(bytes!),
          () => fromBinary(ClientFrameSchema, bytes!, { readUnknownFields: false }),
          ascii,
        );
      }),
      { numRuns: 400 },
    );
  });

  it("encodes and decodes an ack", () => {
    fc.assert(
      fc.property(id, ackRequest, (frameId, request) => {
        const bytes = encodeHotClientFrame(frameId, request);
        expect(bytes).toEqual(protobufEs(frameId, request));
        agreesWithProtobufEs(
          decodeHotClientFrame(bytes!),
          () => fromBinary(ClientFrameSchema, bytes!, { readUnknownFields: false }),
          true,
        );
      }),
      { numRuns: 300 },
    );
  });

  it("decodes nothing protobuf-es would not, and nothing differently, from corrupted frames", () => {
    fc.assert(
      fc.property(
        id,
        fc.oneof(submitRequest, ackRequest),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.nat(),
        (frameId, request, flips, cut) => {
          const bytes = Uint8Array.from(encodeHotClientFrame(frameId, request)!);
          for (const [at, value] of flips) bytes[at % bytes.length] = value;
          const damaged = bytes.subarray(0, bytes.length - (cut % 3));
          return agreesWithProtobufEs(
            decodeHotClientFrame(damaged),
            () => fromBinary(ClientFrameSchema, damaged, { readUnknownFields: false }),
            false,
          );
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("leaves other requests, ids or seqs past 2^53, unknown fields and unpacked seqs to protobuf-es", () => {
    expect(encodeHotClientFrame(1n, { case: "ping", value: {} })).toBeUndefined();
    expect(encodeHotClientFrame(2n ** 60n, { case: "ack", value: { seqs: [1n] } })).toBeUndefined();
    expect(encodeHotClientFrame(1n, { case: "ack", value: { seqs: [2n ** 60n] } })).toBeUndefined();
    expect(decodeHotClientFrame(protobufEs(3n, { case: "ping", value: {} }))).toBeUndefined();
    expect(
      decodeHotClientFrame(protobufEs(2n ** 60n, { case: "ack", value: { seqs: [1n] } })),
    ).toBeUndefined();
    expect(decodeHotClientFrame(new Uint8Array(0))).toBeUndefined();
    // Ack { seqs: [5] } written unpacked (field 1 as a plain varint): valid, not ours to read.
    const unpacked = Uint8Array.of(0x08, 0x01, 0xaa, 0x01, 0x02, 0x08, 0x05);
    expect(decodeHotClientFrame(unpacked)).toBeUndefined();
    expect(fromBinary(ClientFrameSchema, unpacked).request).toMatchObject({
      case: "ack",
      value: { seqs: [5n] },
    });
    // A submission with an unknown field 9 in it.
    const unknown = Uint8Array.of(0xa2, 0x01, 0x02, 0x48, 0x01);
    expect(decodeHotClientFrame(unknown)).toBeUndefined();
  });
});

describe("server frames: hand-written codec against protobuf-es", () => {
  it("queued envelope and its push: encoded byte for byte, decoded back as protobuf-es does", () => {
    fc.assert(
      fc.property(
        text,
        uint32,
        uint32,
        fc.uint8Array({ maxLength: 300 }),
        text,
        text,
        safe,
        safe,
        (senderAccount, senderDevice, type, body, groupId, messageId, serverTimestamp, seq) => {
          const fields = { senderAccount, senderDevice, type, body, groupId, messageId };
          const queued = encodeQueuedEnvelope({ ...fields, serverTimestamp });
          const expected = create(EnvelopeSchema, {
            ...fields,
            serverTimestamp: BigInt(serverTimestamp),
          });
          expect(queued).toEqual(toBinary(EnvelopeSchema, expected));
          const push = encodeEnvelopePush(queued, seq);
          const generic = fromBinary(ServerFrameSchema, push);
          expect(generic.kind.case === "push" && generic.kind.value.kind.value).toEqual({
            ...expected,
            seq: BigInt(seq),
          });
          const ascii = isAscii(senderAccount + groupId + messageId);
          agreesWithProtobufEs(decodeHotServerFrame(push), () => generic, ascii);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("submit response: encoded byte for byte, decoded back", () => {
    fc.assert(
      fc.property(safe, safe, fc.boolean(), (frameId, serverTimestamp, duplicate) => {
        const expected = toBinary(
          ServerFrameSchema,
          create(ServerFrameSchema, {
            kind: {
              case: "response",
              value: {
                id: BigInt(frameId),
                result: {
                  case: "submit",
                  value: { serverTimestamp: BigInt(serverTimestamp), duplicate },
                },
              },
            },
          }),
        );
        const bytes = encodeSubmitResponse(BigInt(frameId), serverTimestamp, duplicate);
        expect(bytes).toEqual(expected);
        agreesWithProtobufEs(
          decodeHotServerFrame(bytes!),
          () => fromBinary(ServerFrameSchema, bytes!),
          true,
        );
      }),
      { numRuns: 300 },
    );
    expect(encodeSubmitResponse(2n ** 60n + 3n, 5, false)).toBeUndefined();
  });

  it("decodes nothing protobuf-es would not, and nothing differently, from corrupted frames", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.tuple(text, fc.uint8Array({ maxLength: 60 }), safe).map(([account, body, seq]) =>
            encodeEnvelopePush(
              encodeQueuedEnvelope({
                senderAccount: account,
                senderDevice: 2,
                type: 2,
                body,
                messageId: "m-1",
                serverTimestamp: 1_700_000_000_000,
              }),
              seq,
            ),
          ),
          fc
            .tuple(safe, safe, fc.boolean())
            .map(([i, t, d]) => encodeSubmitResponse(BigInt(i), t, d)!),
        ),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.nat(),
        (frame, flips, cut) => {
          const bytes = Uint8Array.from(frame);
          for (const [at, value] of flips) bytes[at % bytes.length] = value;
          const damaged = bytes.subarray(0, bytes.length - (cut % 3));
          return agreesWithProtobufEs(
            decodeHotServerFrame(damaged),
            () => fromBinary(ServerFrameSchema, damaged),
            false,
          );
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("leaves other pushes and error responses to protobuf-es", () => {
    const queueEmpty = toBinary(
      ServerFrameSchema,
      create(ServerFrameSchema, {
        kind: { case: "push", value: { kind: { case: "queueEmpty", value: {} } } },
      }),
    );
    expect(decodeHotServerFrame(queueEmpty)).toBeUndefined();
    const refused = toBinary(
      ServerFrameSchema,
      create(ServerFrameSchema, {
        kind: {
          case: "response",
          value: { id: 4n, error: { code: "MismatchedDevices", message: "devices changed" } },
        },
      }),
    );
    expect(decodeHotServerFrame(refused)).toBeUndefined();
  });
});
