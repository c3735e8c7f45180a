import { create, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema } from "@pairwise/core/relay-proto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { RelayRequestInit } from "./relay-connection.ts";
import { encodeHotClientFrame } from "./relay-wire.ts";

// The hand-written encoders must produce exactly what protobuf-es produces.
const text = fc.oneof(
  fc.constant(""),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 20 }),
);
const uint32 = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
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

const protobufEs = (frameId: bigint, request: RelayRequestInit) =>
  toBinary(ClientFrameSchema, create(ClientFrameSchema, { id: frameId, request }));

describe("hot-path client frames match protobuf-es", () => {
  it("submitMessage", () => {
    fc.assert(
      fc.property(
        id,
        fc.option(text, { nil: undefined }),
        fc.array(copy, { maxLength: 6 }),
        flag,
        flag,
        flag,
        (frameId, messageId, copies, urgent, targeted, federated) => {
          const request: RelayRequestInit = {
            case: "submitMessage",
            value: {
              ...(messageId === undefined ? {} : { messageId }),
              copies,
              ...(urgent === undefined ? {} : { urgent }),
              ...(targeted === undefined ? {} : { targeted }),
              ...(federated === undefined ? {} : { federated }),
            },
          };
          expect(encodeHotClientFrame(frameId, request)).toEqual(protobufEs(frameId, request));
        },
      ),
      { numRuns: 400 },
    );
  });

  it("ack", () => {
    fc.assert(
      fc.property(
        id,
        fc.array(fc.bigInt({ min: 0n, max: BigInt(Number.MAX_SAFE_INTEGER) }), { maxLength: 130 }),
        (frameId, seqs) => {
          const request: RelayRequestInit = { case: "ack", value: { seqs } };
          expect(encodeHotClientFrame(frameId, request)).toEqual(protobufEs(frameId, request));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("leaves other requests, and ids or seqs past 2^53, to protobuf-es", () => {
    expect(encodeHotClientFrame(1n, { case: "ping", value: {} })).toBeUndefined();
    expect(encodeHotClientFrame(2n ** 60n, { case: "ack", value: { seqs: [1n] } })).toBeUndefined();
    expect(encodeHotClientFrame(1n, { case: "ack", value: { seqs: [2n ** 60n] } })).toBeUndefined();
  });
});
