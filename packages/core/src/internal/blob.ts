import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createSecretKey,
  hkdfSync,
  randomBytes,
  type KeyObject,
} from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { toBytes } from "./bytes.ts";
import { CoreError } from "./errors.ts";

/**
 * The one encrypted-blob format of Pairwise (media, history sync, backups), age-style STREAM.
 *
 * Header (all integers big-endian):
 *
 * | offset | size | field                                                     |
 * |--------|------|-----------------------------------------------------------|
 * | 0      | 4    | magic `"PWBL"` (0x50 0x57 0x42 0x4c)                       |
 * | 4      | 1    | version, 0x01                                             |
 * | 5      | 16   | nonce, random per blob                                    |
 * | 21     | 1    | slot count n (0 for media and history)                    |
 * | 22     | …    | n slots, each: u8 type (1..255), u16 length, length bytes |
 *
 * The whole header is at most {@link BLOB_MAX_HEADER_BYTES}. Slot contents are opaque here
 * (backups put wrapped keys there).
 *
 * Body: payload key = HKDF-SHA256(ikm = 32-byte blob key, salt = nonce, info = "payload", 32).
 * The plaintext is cut into {@link BLOB_CHUNK_SIZE} chunks; every chunk but the last is full, the
 * last holds 1..65536 bytes and is empty only when the whole plaintext is. Each chunk is
 * AES-256-GCM with nonce = 11-byte chunk counter ‖ last-chunk flag (0x01 on the final chunk,
 * else 0x00), AAD = the complete header bytes, and its 16-byte tag appended.
 */
export const BLOB_MAGIC: Uint8Array = Uint8Array.of(0x50, 0x57, 0x42, 0x4c);
/** Version byte of the blob header. */
export const BLOB_VERSION = 1;
/** Size of a blob key. */
export const BLOB_KEY_BYTES = 32;
/** Size of the per-blob header nonce (the HKDF salt). */
export const BLOB_NONCE_BYTES = 16;
/** Plaintext bytes per chunk. */
export const BLOB_CHUNK_SIZE = 65_536;
/** Upper bound on the header (magic through slots). */
export const BLOB_MAX_HEADER_BYTES = 4096;

const TAG_BYTES = 16;
const SEALED_CHUNK = BLOB_CHUNK_SIZE + TAG_BYTES;
const FIXED_HEADER = BLOB_MAGIC.length + 1 + BLOB_NONCE_BYTES + 1;
const MAX_CHUNKS = 2 ** 48; // the counter is written as 48 bits; 16 EiB is out of reach anyway

/** One key slot of a blob header: an application-defined type and opaque bytes. */
export interface BlobKeySlot {
  readonly type: number;
  readonly data: Uint8Array;
}

/** A parsed blob header. */
export interface BlobHeader {
  readonly version: number;
  readonly nonce: Uint8Array<ArrayBuffer>;
  readonly slots: readonly BlobKeySlot[];
  /** Bytes the header occupies at the start of the blob. */
  readonly headerLength: number;
}

/** A blob encrypt or decrypt stream; usable with `stream/promises` `pipeline`. */
export interface BlobStream extends Transform {
  /**
   * SHA-256 of the whole ciphertext (header included), what media pointers carry.
   * Throws `CoreError("InvalidArgument")` before the stream has finished.
   */
  digest(): Uint8Array<ArrayBuffer>;
  /** Plaintext bytes seen so far. */
  readonly plaintextBytes: number;
  /** Ciphertext bytes seen so far (header included). */
  readonly ciphertextBytes: number;
}

/** Options of {@link createBlobEncryptStream} and {@link encryptBlob}. */
export interface BlobEncryptOptions {
  /** Key slots to put in the header; none for media and history. */
  readonly slots?: readonly BlobKeySlot[];
  /** Randomness for the header nonce (tests and vectors); defaults to `crypto.randomBytes`. */
  readonly random?: (n: number) => Uint8Array;
}

/** Options of {@link createBlobDecryptStream}. */
export interface BlobDecryptOptions {
  /** When set, the stream fails at its end unless the ciphertext has this SHA-256. */
  readonly expectedSha256?: Uint8Array;
}

/** A fresh random 32-byte blob key. */
export function generateBlobKey(
  random: (n: number) => Uint8Array = randomBytes,
): Uint8Array<ArrayBuffer> {
  return checkedRandom(random, BLOB_KEY_BYTES);
}

/**
 * Exact ciphertext size for a plaintext of `plaintextSize` bytes (header with the given slots).
 * Throws `CoreError("InvalidArgument")` for a negative or non-integer size or bad slots.
 */
export function blobCiphertextSize(
  plaintextSize: number,
  options: { slots?: readonly BlobKeySlot[] } = {},
): number {
  if (!Number.isSafeInteger(plaintextSize) || plaintextSize < 0) {
    throw new CoreError("InvalidArgument", "plaintext size must be a non-negative integer");
  }
  const chunks = Math.max(1, Math.ceil(plaintextSize / BLOB_CHUNK_SIZE));
  return headerSize(options.slots ?? []) + plaintextSize + chunks * TAG_BYTES;
}

/**
 * Parses the header at the start of `bytes` (more may follow), so slots can be read before the
 * key is known. Throws `CoreError("MalformedInput")` for a bad or truncated header.
 */
export function readBlobHeader(bytes: Uint8Array): BlobHeader {
  const parsed = parseHeader(bytes);
  if (typeof parsed === "number") throw new CoreError("MalformedInput", "blob header is truncated");
  return parsed;
}

/**
 * Encrypts a small plaintext held in memory. Use {@link createBlobEncryptStream} for large data.
 * Throws `CoreError("InvalidKey")` for a key that is not 32 bytes, `"InvalidArgument"` for bad
 * slots or randomness.
 */
export function encryptBlob(
  key: Uint8Array,
  plaintext: Uint8Array,
  options: BlobEncryptOptions = {},
): Uint8Array<ArrayBuffer> {
  const sealer = new Sealer(key, options);
  const out = new Uint8Array(
    sealer.header.length + plaintext.length + chunkCount(plaintext.length) * TAG_BYTES,
  );
  out.set(sealer.header);
  let offset = sealer.header.length;
  let start = 0;
  do {
    const end = Math.min(start + BLOB_CHUNK_SIZE, plaintext.length);
    const sealed = sealer.sealJoined(plaintext.subarray(start, end), end === plaintext.length);
    out.set(sealed, offset);
    offset += sealed.length;
    start = end;
  } while (start < plaintext.length);
  return out;
}

/**
 * Decrypts a whole blob held in memory. Throws `CoreError("MalformedInput")` for a bad header,
 * `"DecryptionFailed"` for a wrong key, any modification, truncation or trailing data, and
 * `"InvalidKey"` for a key that is not 32 bytes.
 */
export function decryptBlob(key: Uint8Array, ciphertext: Uint8Array): Uint8Array<ArrayBuffer> {
  const opener = new Opener(key, readBlobHeader(ciphertext), ciphertext);
  const body = ciphertext.subarray(opener.headerLength);
  const full = body.length === 0 ? 0 : Math.floor((body.length - 1) / SEALED_CHUNK);
  checkFinalChunk(body.length - full * SEALED_CHUNK, full);
  const out = new Uint8Array(body.length - (full + 1) * TAG_BYTES);
  for (let i = 0; i <= full; i++) {
    const sealed = body.subarray(i * SEALED_CHUNK, Math.min((i + 1) * SEALED_CHUNK, body.length));
    out.set(opener.open(sealed, i === full), i * BLOB_CHUNK_SIZE);
  }
  return out;
}

/**
 * A `Transform` that encrypts whatever is written to it into a blob, in bounded memory (at most
 * about one chunk buffered). `digest()` gives the ciphertext SHA-256 after it finishes.
 * Throws (synchronously) `CoreError("InvalidKey")` / `"InvalidArgument"` like {@link encryptBlob}.
 */
export function createBlobEncryptStream(
  options: BlobEncryptOptions & { readonly key: Uint8Array },
): BlobStream {
  return new EncryptStream(new Sealer(options.key, options));
}

/**
 * A `Transform` that decrypts a blob written to it, in bounded memory. It emits a chunk's
 * plaintext only once that chunk authenticated, but earlier chunks are out before a later
 * failure: discard the output when the stream errors. Errors like {@link decryptBlob}; with
 * `expectedSha256`, a digest mismatch is `"DecryptionFailed"` too.
 */
export function createBlobDecryptStream(
  options: BlobDecryptOptions & { readonly key: Uint8Array },
): BlobStream {
  return new DecryptStream(checkKey(options.key), options.expectedSha256);
}

/** Size of the AES-256-GCM tag that ends every sealed chunk. */
export const BLOB_TAG_BYTES = 16;

/** One sealed chunk: its ciphertext and its 16-byte tag (stored right after it). */
export interface SealedChunk {
  readonly body: Buffer;
  readonly tag: Buffer;
}

/**
 * Chunk-level access to the blob format for callers that cut the plaintext themselves (backups:
 * records are framed straight into 64 KiB chunks, with no stream in between). Write `header`,
 * then for every chunk in order `body ‖ tag`; every chunk but the last holds exactly
 * {@link BLOB_CHUNK_SIZE} bytes. The output is byte-identical to {@link createBlobEncryptStream}.
 */
export interface BlobSealer {
  readonly header: Buffer;
  /** Chunks sealed so far. */
  readonly chunks: number;
  /**
   * Seals the next chunk. Throws `CoreError("InvalidArgument")` for a chunk of the wrong size
   * (a non-final chunk must be full, the final one at most full) or a call after the final one.
   */
  seal(plaintext: Uint8Array, last: boolean): SealedChunk;
}

/** Creates a {@link BlobSealer}. Throws like {@link encryptBlob}. */
export function createBlobSealer(
  options: BlobEncryptOptions & { readonly key: Uint8Array },
): BlobSealer {
  return new Sealer(options.key, options);
}

/**
 * Chunk-level decryption, the counterpart of {@link BlobSealer}: `open(sealed, last)` takes one
 * sealed chunk (`body ‖ tag`, {@link BLOB_CHUNK_SIZE} + 16 bytes except the last) in order.
 * Throws `CoreError("DecryptionFailed")` when a chunk does not authenticate (a wrong key, any
 * modification, reordering, or a chunk taken for the last that is not) and `"MalformedInput"`
 * for a chunk of an impossible size.
 */
export interface BlobOpener {
  /** Length of the header the opener was made from. */
  readonly headerLength: number;
  open(sealed: Uint8Array, last: boolean): Buffer;
}

/**
 * Creates a {@link BlobOpener} from the blob's header bytes (at least the whole header; more
 * may follow). Throws `CoreError("MalformedInput")` for a bad header, `"InvalidKey"`.
 */
export function createBlobOpener(key: Uint8Array, headerBytes: Uint8Array): BlobOpener {
  const header = readBlobHeader(headerBytes);
  const opener = new Opener(key, header, headerBytes);
  return {
    headerLength: header.headerLength,
    open(sealed, last) {
      if (sealed.length > SEALED_CHUNK || (!last && sealed.length !== SEALED_CHUNK)) {
        throw new CoreError("MalformedInput", "a sealed blob chunk has the wrong size");
      }
      if (last) checkFinalChunk(sealed.length, opener.counter);
      return opener.open(sealed, last);
    },
  };
}

// ------------------------------------------------------------------------- internals

function checkKey(key: Uint8Array): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== BLOB_KEY_BYTES) {
    throw new CoreError("InvalidKey", "blob key must be 32 bytes");
  }
  return key;
}

function checkedRandom(random: (n: number) => Uint8Array, n: number): Uint8Array<ArrayBuffer> {
  const bytes = random(n);
  if (!(bytes instanceof Uint8Array) || bytes.length !== n) {
    throw new CoreError("InvalidArgument", "random source returned the wrong number of bytes");
  }
  return toBytes(bytes);
}

function chunkCount(plaintextSize: number): number {
  return Math.max(1, Math.ceil(plaintextSize / BLOB_CHUNK_SIZE));
}

function headerSize(slots: readonly BlobKeySlot[]): number {
  if (slots.length > 255) throw new CoreError("InvalidArgument", "too many blob key slots");
  let size = FIXED_HEADER;
  for (const slot of slots) {
    if (!Number.isInteger(slot.type) || slot.type < 1 || slot.type > 255) {
      throw new CoreError("InvalidArgument", "blob key slot type must be 1..255");
    }
    size += 3 + slot.data.length;
  }
  if (size > BLOB_MAX_HEADER_BYTES) throw new CoreError("InvalidArgument", "blob header too large");
  return size;
}

function encodeHeader(nonce: Uint8Array, slots: readonly BlobKeySlot[]): Buffer {
  const header = Buffer.alloc(headerSize(slots));
  header.set(BLOB_MAGIC, 0);
  header[4] = BLOB_VERSION;
  header.set(nonce, 5);
  header[21] = slots.length;
  let offset = FIXED_HEADER;
  for (const slot of slots) {
    header[offset] = slot.type;
    header.writeUInt16BE(slot.data.length, offset + 1);
    header.set(slot.data, offset + 3);
    offset += 3 + slot.data.length;
  }
  return header;
}

/** The parsed header, or how many bytes are needed before parsing can finish. */
function parseHeader(bytes: Uint8Array): BlobHeader | number {
  for (let i = 0; i < Math.min(bytes.length, BLOB_MAGIC.length); i++) {
    if (bytes[i] !== BLOB_MAGIC[i]) throw new CoreError("MalformedInput", "not a Pairwise blob");
  }
  if (bytes.length < FIXED_HEADER) return FIXED_HEADER;
  if (bytes[4] !== BLOB_VERSION) throw new CoreError("MalformedInput", "unsupported blob version");
  const count = bytes[21] ?? 0;
  const slots: BlobKeySlot[] = [];
  let offset = FIXED_HEADER;
  for (let i = 0; i < count; i++) {
    if (bytes.length < offset + 3) return offset + 3;
    const type = bytes[offset] ?? 0;
    const length = ((bytes[offset + 1] ?? 0) << 8) | (bytes[offset + 2] ?? 0);
    if (type === 0) throw new CoreError("MalformedInput", "blob key slot type 0 is reserved");
    const end = offset + 3 + length;
    if (end > BLOB_MAX_HEADER_BYTES) throw new CoreError("MalformedInput", "blob header too large");
    if (bytes.length < end) return end;
    slots.push({ type, data: toBytes(bytes.subarray(offset + 3, end)) });
    offset = end;
  }
  return {
    version: BLOB_VERSION,
    nonce: toBytes(bytes.subarray(5, 21)),
    slots,
    headerLength: offset,
  };
}

function payloadKey(key: Uint8Array, nonce: Uint8Array): KeyObject {
  return createSecretKey(new Uint8Array(hkdfSync("sha256", key, nonce, "payload", 32)));
}

function chunkNonce(counter: number, last: boolean): Buffer {
  if (counter >= MAX_CHUNKS) throw new CoreError("InputTooLarge", "blob has too many chunks");
  const nonce = Buffer.alloc(12);
  nonce.writeUIntBE(counter, 5, 6);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

/** Rejects a final sealed chunk that cannot be valid before spending AES on it. */
function checkFinalChunk(sealedLength: number, chunksBefore: number): void {
  if (sealedLength < TAG_BYTES) throw new CoreError("DecryptionFailed", "blob is truncated");
  if (sealedLength === TAG_BYTES && chunksBefore > 0) {
    throw new CoreError("DecryptionFailed", "blob has an empty final chunk");
  }
}

class Sealer implements BlobSealer {
  readonly header: Buffer;
  private readonly key: KeyObject;
  private counter = 0;
  private ended = false;

  constructor(key: Uint8Array, options: BlobEncryptOptions) {
    checkKey(key);
    const nonce = checkedRandom(options.random ?? randomBytes, BLOB_NONCE_BYTES);
    this.header = encodeHeader(nonce, options.slots ?? []);
    this.key = payloadKey(key, nonce);
  }

  get chunks(): number {
    return this.counter;
  }

  seal(plaintext: Uint8Array, last: boolean): SealedChunk {
    if (this.ended) throw new CoreError("InvalidArgument", "the blob's final chunk was sealed");
    if (plaintext.length > BLOB_CHUNK_SIZE || (!last && plaintext.length !== BLOB_CHUNK_SIZE)) {
      throw new CoreError("InvalidArgument", "a blob chunk has the wrong size");
    }
    this.ended = last;
    const cipher = createCipheriv("aes-256-gcm", this.key, chunkNonce(this.counter++, last));
    cipher.setAAD(this.header);
    const body = cipher.update(plaintext);
    cipher.final();
    return { body, tag: cipher.getAuthTag() };
  }

  /** `body ‖ tag` in one buffer. */
  sealJoined(plaintext: Uint8Array, last: boolean): Buffer {
    const { body, tag } = this.seal(plaintext, last);
    return Buffer.concat([body, tag], body.length + tag.length);
  }
}

class Opener {
  readonly headerLength: number;
  counter = 0;
  private readonly header: Uint8Array;
  private readonly key: KeyObject;

  constructor(key: Uint8Array, header: BlobHeader, bytes: Uint8Array) {
    checkKey(key);
    this.headerLength = header.headerLength;
    this.header = bytes.subarray(0, header.headerLength);
    this.key = payloadKey(key, header.nonce);
  }

  open(sealed: Uint8Array, last: boolean): Buffer {
    const decipher = createDecipheriv("aes-256-gcm", this.key, chunkNonce(this.counter++, last));
    decipher.setAAD(this.header);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    try {
      return Buffer.concat([
        decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch {
      throw new CoreError("DecryptionFailed", "blob chunk failed to authenticate");
    }
  }
}

/** FIFO of buffers that hands out exact-size pieces without quadratic copying. */
class ByteQueue {
  length = 0;
  private parts: Buffer[] = [];
  private head = 0;

  push(part: Buffer): void {
    if (part.length === 0) return;
    this.parts.push(part);
    this.length += part.length;
  }

  /** Copies out the first `n` bytes (n ≤ length), consuming them unless `peek`. */
  take(n: number, peek = false): Buffer {
    const out = Buffer.allocUnsafe(n);
    let copied = 0;
    let index = this.head;
    while (copied < n) {
      const part = this.parts[index] as Buffer;
      const k = Math.min(part.length, n - copied);
      part.copy(out, copied, 0, k);
      copied += k;
      if (k === part.length) index++;
      else if (!peek) this.parts[index] = part.subarray(k);
    }
    if (!peek) {
      this.length -= n;
      this.head = index;
      if (this.head > 64 || this.head === this.parts.length) {
        this.parts = this.parts.slice(this.head);
        this.head = 0;
      }
    }
    return out;
  }
}

function asCoreError(err: unknown): Error {
  return CoreError.is(err)
    ? err
    : new CoreError("MalformedInput", "blob stream failed", { cause: err });
}

abstract class BlobTransform extends Transform implements BlobStream {
  plaintextBytes = 0;
  ciphertextBytes = 0;
  protected readonly queue = new ByteQueue();
  protected readonly hash = createHash("sha256");
  private result: Uint8Array<ArrayBuffer> | undefined;

  digest(): Uint8Array<ArrayBuffer> {
    if (this.result === undefined) {
      throw new CoreError("InvalidArgument", "blob stream has not finished");
    }
    return toBytes(this.result);
  }

  override _transform(
    chunk: unknown,
    _encoding: BufferEncoding,
    callback: TransformCallback,
  ): void {
    try {
      if (!Buffer.isBuffer(chunk)) {
        throw new CoreError("InvalidArgument", "blob streams take bytes");
      }
      this.consume(chunk);
      callback();
    } catch (err) {
      callback(asCoreError(err));
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.finish();
      this.result = new Uint8Array(this.hash.digest());
      callback();
    } catch (err) {
      callback(asCoreError(err));
    }
  }

  protected abstract consume(chunk: Buffer): void;
  protected abstract finish(): void;
}

class EncryptStream extends BlobTransform {
  private headerSent = false;

  constructor(private readonly sealer: Sealer) {
    super();
  }

  protected consume(chunk: Buffer): void {
    this.sendHeader();
    this.plaintextBytes += chunk.length;
    this.queue.push(chunk);
    // Hold a full chunk back until more arrives: only then is it known not to be the last.
    while (this.queue.length > BLOB_CHUNK_SIZE) {
      this.output(this.sealer.sealJoined(this.queue.take(BLOB_CHUNK_SIZE), false));
    }
  }

  protected finish(): void {
    this.sendHeader();
    this.output(this.sealer.sealJoined(this.queue.take(this.queue.length), true));
  }

  private sendHeader(): void {
    if (this.headerSent) return;
    this.headerSent = true;
    this.output(this.sealer.header);
  }

  private output(bytes: Buffer): void {
    this.hash.update(bytes);
    this.ciphertextBytes += bytes.length;
    this.push(bytes);
  }
}

class DecryptStream extends BlobTransform {
  private opener: Opener | undefined;
  private needed = 0;

  constructor(
    private readonly key: Uint8Array,
    private readonly expectedSha256: Uint8Array | undefined,
  ) {
    super();
  }

  protected consume(chunk: Buffer): void {
    this.hash.update(chunk);
    this.ciphertextBytes += chunk.length;
    this.queue.push(chunk);
    if (this.opener === undefined && !this.tryHeader()) return;
    while (this.queue.length > SEALED_CHUNK) {
      this.emitPlain(this.openNext(this.queue.take(SEALED_CHUNK), false));
    }
  }

  protected finish(): void {
    if (this.opener === undefined && !this.tryHeader()) {
      throw new CoreError("MalformedInput", "blob header is truncated");
    }
    const rest = this.queue.take(this.queue.length);
    checkFinalChunk(rest.length, this.opener?.counter ?? 0);
    const plaintext = this.openNext(rest, true);
    if (this.expectedSha256 !== undefined) {
      const actual = this.hash.copy().digest();
      if (!actual.equals(this.expectedSha256)) {
        throw new CoreError("DecryptionFailed", "blob digest mismatch");
      }
    }
    this.emitPlain(plaintext);
  }

  private tryHeader(): boolean {
    if (this.queue.length < this.needed) return false;
    const available = this.queue.take(Math.min(this.queue.length, BLOB_MAX_HEADER_BYTES), true);
    const parsed = parseHeader(available);
    if (typeof parsed === "number") {
      this.needed = parsed;
      return false;
    }
    this.opener = new Opener(this.key, parsed, this.queue.take(parsed.headerLength));
    return true;
  }

  private openNext(sealed: Buffer, last: boolean): Buffer {
    return (this.opener as Opener).open(sealed, last);
  }

  private emitPlain(plaintext: Buffer): void {
    this.plaintextBytes += plaintext.length;
    if (plaintext.length > 0) this.push(plaintext);
  }
}
