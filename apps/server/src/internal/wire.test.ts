import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { EnvelopeSchema, ServerFrameSchema } from "@pairwise/core/relay-proto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { encodeEnvelopePush, encodeQueuedEnvelope, encodeSubmitResponse } from "./wire.ts";

// The hand-written hot-path encoders must produce exactly what protobuf-es produces.
const uint = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
const big = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }));
const text = fc.oneof(fc.constant(""), fc.string({ unit: "binary", maxLength: 40 }));

describe("hot-path encoders match protobuf-es", () => {
  it("queued envelope and its push", () => {
    fc.assert(
      fc.property(
        text,
        uint,
        uint,
        fc.uint8Array({ maxLength: 300 }),
        text,
        text,
        big,
        big,
        (senderAccount, senderDevice, type, body, groupId, messageId, serverTimestamp, seq) => {
          const fields = { senderAccount, senderDevice, type, body, groupId, messageId };
          const queued = encodeQueuedEnvelope({ ...fields, serverTimestamp });
          const expected = create(EnvelopeSchema, {
            ...fields,
            serverTimestamp: BigInt(serverTimestamp),
          });
          expect(queued).toEqual(toBinary(EnvelopeSchema, expected));
          const push = fromBinary(ServerFrameSchema, encodeEnvelopePush(queued, seq));
          expect(push.kind.case).toBe("push");
          const envelope = push.kind.case === "push" ? push.kind.value.kind : undefined;
          expect(envelope?.case).toBe("envelope");
          expect(envelope?.value).toEqual({ ...expected, seq: BigInt(seq) });
        },
      ),
      { numRuns: 300 },
    );
  });

  it("submit response", () => {
    fc.assert(
      fc.property(big, big, fc.boolean(), (id, serverTimestamp, duplicate) => {
        const expected = toBinary(
          ServerFrameSchema,
          create(ServerFrameSchema, {
            kind: {
              case: "response",
              value: {
                id: BigInt(id),
                result: {
                  case: "submit",
                  value: { serverTimestamp: BigInt(serverTimestamp), duplicate },
                },
              },
            },
          }),
        );
        expect(encodeSubmitResponse(BigInt(id), serverTimestamp, duplicate)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
    // An id past 2^53 takes the generic encoder.
    const id = 2n ** 60n + 3n;
    const frame = fromBinary(ServerFrameSchema, encodeSubmitResponse(id, 5, false));
    expect(frame.kind.case === "response" && frame.kind.value.id).toBe(id);
  });
});
