import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ClientFrameSchema,
  ServerFrameSchema,
  type ClientFrame,
  type PushSchema,
  type ResponseSchema,
} from "@pairwise/core/relay-proto";
import {
  decodeHotClientFrame,
  encodeSubmitResponse as encodeHotSubmitResponse,
} from "@pairwise/core/relay-wire";
import { ServerError } from "./errors.ts";

// The per-message frames (a submission, an ack, a SubmitResult, an Envelope push) go through the
// hand-written codecs of `@pairwise/core/relay-wire`; everything else through protobuf-es.
export { encodeEnvelopePush, encodeQueuedEnvelope } from "@pairwise/core/relay-wire";

/** Decodes one client frame; `ServerError("InvalidRequest")` for anything that is not one. */
export function decodeClientFrame(bytes: Uint8Array): ClientFrame {
  try {
    return (
      decodeHotClientFrame(bytes) ??
      fromBinary(ClientFrameSchema, bytes, { readUnknownFields: false })
    );
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

/** A ServerFrame answering a submission: Response { id, submit: SubmitResult }. */
export function encodeSubmitResponse(
  id: bigint,
  serverTimestamp: number,
  duplicate: boolean,
): Uint8Array {
  return (
    encodeHotSubmitResponse(id, serverTimestamp, duplicate) ??
    encodeResponse({
      id,
      result: { case: "submit", value: { serverTimestamp: BigInt(serverTimestamp), duplicate } },
    })
  );
}
