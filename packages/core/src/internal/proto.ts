import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { CoreError } from "./errors.ts";

/** Default cap on any protobuf core decodes from the network or disk. */
export const MAX_PROTO_BYTES = 256 * 1024;

/**
 * Decodes protobuf bytes at the edge: size-capped, unknown fields dropped, any parse failure
 * turned into `CoreError("MalformedInput")` (oversize: `"InputTooLarge"`). The message names
 * only what was being decoded, never its bytes.
 */
export function decodeProto<Desc extends DescMessage>(
  schema: Desc,
  bytes: Uint8Array,
  what: string,
  maxBytes = MAX_PROTO_BYTES,
): MessageShape<Desc> {
  if (bytes.length > maxBytes)
    throw new CoreError("InputTooLarge", `${what} exceeds ${maxBytes} bytes`);
  try {
    return fromBinary(schema, bytes, { readUnknownFields: false });
  } catch (cause) {
    throw new CoreError("MalformedInput", `${what} is not a valid protobuf`, { cause });
  }
}

/** Encodes a message to protobuf bytes. */
export function encodeProto<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): Uint8Array<ArrayBuffer> {
  return toBinary(schema, message);
}
