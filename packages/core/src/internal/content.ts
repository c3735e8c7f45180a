import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { ContentSchema, type Content } from "../gen/pairwise_pb.ts";
import type { DeviceCiphertext, DeviceCrypto, EncryptTarget } from "./device-crypto.ts";
import { CoreError } from "./errors.ts";
import { padPlaintext, unpadPlaintext } from "./padding.ts";
import { decodeProto, encodeProto } from "./proto.ts";
import type { DeviceAddress, StateTransaction } from "./store/device-state.ts";

/** What a caller fills in to build a {@link Content} (protobuf-es init shape). */
export type ContentInit = MessageInitShape<typeof ContentSchema>;

/** Largest encoded content (before padding) core accepts: text, pointers and keys, not media. */
export const MAX_CONTENT_BYTES = 128 * 1024;
const MAX_ID = 128;

/** Checks the invariants every content must hold; throws `CoreError("MalformedInput")`. */
function validate(content: Content): Content {
  const fail = (what: string): never => {
    throw new CoreError("MalformedInput", `content: ${what}`);
  };
  if (content.messageId.length === 0 || content.messageId.length > MAX_ID)
    fail("message id missing or too long");
  if (content.groupId.length > MAX_ID) fail("group id too long");
  if (content.body.case === undefined) fail("no body");
  return content;
}

/** Encodes and pads a content for encryption. Throws `CoreError("InvalidArgument")` if invalid. */
export function encodeContent(init: ContentInit): Uint8Array {
  const content = create(ContentSchema, init);
  try {
    validate(content);
  } catch (err) {
    throw new CoreError("InvalidArgument", CoreError.is(err) ? err.message : "invalid content");
  }
  const bytes = encodeProto(ContentSchema, content);
  if (bytes.length > MAX_CONTENT_BYTES) throw new CoreError("InputTooLarge", "content too large");
  return padPlaintext(bytes);
}

/** Unpads and decodes a decrypted content. Throws `CoreError("MalformedInput" | "InputTooLarge")`. */
export function decodeContent(padded: Uint8Array): Content {
  return validate(decodeProto(ContentSchema, unpadPlaintext(padded), "content", MAX_CONTENT_BYTES));
}

/** Encrypts one content for every target device (client fan-out), padded. */
export function encryptContent(
  device: DeviceCrypto,
  targets: readonly EncryptTarget[],
  content: ContentInit,
  options: { record?: (tx: StateTransaction) => void } = {},
): Promise<DeviceCiphertext[]> {
  return device.encrypt(targets, encodeContent(content), options);
}

/**
 * Encrypts several contents, each to its own devices (a message and its sync copy), in one
 * transaction — one commit for the whole fan-out, with `record` in it. Returns the ciphertexts
 * per part, in the parts' order.
 */
export async function encryptContents(
  device: DeviceCrypto,
  parts: ReadonlyArray<{ targets: readonly EncryptTarget[]; content: ContentInit }>,
  options: { record?: (tx: StateTransaction) => void } = {},
): Promise<DeviceCiphertext[][]> {
  const flat: EncryptTarget[] = [];
  for (const p of parts) {
    const plaintext = encodeContent(p.content);
    for (const t of p.targets) flat.push({ ...t, plaintext });
  }
  const out = await device.encrypt(flat, new Uint8Array(0), options);
  const result: DeviceCiphertext[][] = [];
  let offset = 0;
  for (const p of parts) {
    result.push(out.slice(offset, offset + p.targets.length));
    offset += p.targets.length;
  }
  return result;
}

/** The result of {@link decryptContent}. */
export interface DecryptedContent {
  content: Content;
  sender: DeviceAddress;
  /** True when this sender's message id was already processed: show nothing, just acknowledge. */
  duplicate: boolean;
}

/**
 * Decrypts, unpads and decodes one device's ciphertext, deduplicating by sender and message id.
 * `record` runs only for a new message, inside the same transaction as the session update and
 * the dedup marker: store the message there, and acknowledge it to the server after this
 * resolves. Throws `CoreError` with stored state unchanged.
 */
export function decryptContent(
  device: DeviceCrypto,
  sender: DeviceAddress,
  ciphertext: { type: "prekey" | "message"; body: Uint8Array },
  options: { record?: (content: Content, tx: StateTransaction) => void; now?: number } = {},
): Promise<DecryptedContent> {
  // A replayed ciphertext whose message key is already used fails in libsignal itself with
  // CoreError("DuplicateMessage"); this catches a sender re-encrypting the same message id.
  return device.decrypt(sender, ciphertext, (plaintext, tx) => {
    const content = decodeContent(plaintext);
    if (tx.wasProcessed(sender, content.messageId)) return { content, sender, duplicate: true };
    tx.markProcessed(sender, content.messageId, options.now ?? Date.now());
    options.record?.(content, tx);
    return { content, sender, duplicate: false };
  });
}
