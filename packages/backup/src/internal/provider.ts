import { BackupError } from "./errors.ts";

/** An object a provider holds. */
export interface StoredObject {
  /** The object's name, e.g. `pairwise-backup/0000000001-9f3a…/manifest`. */
  readonly name: string;
  readonly size: number;
}

/**
 * Where backups are stored: the one contract every provider (`fs`, `s3`, `google-drive`,
 * `icloud`) implements. Names are `/`-separated paths of `[A-Za-z0-9._-]` segments.
 *
 * - `put` streams a whole object; it becomes visible to `get` and `list` only once complete (a
 *   cut upload leaves nothing, or nothing readable under that name). Providers retry transient
 *   failures of the pieces they can replay (parts, chunks) with backoff, resuming where the
 *   service supports it.
 * - `get` streams an object back; `BackupError("NotFound")` if there is none.
 * - `delete` removes an object if it exists.
 * - `list` gives every object whose name starts with `prefix`.
 *
 * Failures are `BackupError("ProviderFailure")` after retries, never with object contents.
 */
export interface BackupProvider {
  /** Short name for logs and errors, e.g. `"fs"`. */
  readonly name: string;
  /** Largest object the service takes; the archive cuts its ciphertext into parts below it. */
  readonly maxObjectBytes: number;
  put(name: string, body: AsyncIterable<Uint8Array>): Promise<void>;
  get(name: string): Promise<AsyncIterable<Uint8Array>>;
  delete(name: string): Promise<void>;
  list(prefix: string): Promise<StoredObject[]>;
}

const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Checks an object name; `BackupError("InvalidArgument")` for anything but plain segments. */
export function checkObjectName(name: string): string {
  const parts = name.split("/");
  if (name.length > 512 || parts.some((p) => !SEGMENT.test(p) || p === "." || p === "..")) {
    throw new BackupError("InvalidArgument", "bad backup object name");
  }
  return name;
}

/** Options of {@link withRetries}. */
export interface RetryOptions {
  /** Attempts in all (default 5). */
  readonly attempts?: number;
  /** First delay in ms, doubled each time with jitter (default 200). */
  readonly baseDelayMs?: number;
  /** Is this failure worth another try? Default: anything but a `BackupError` other than ProviderFailure. */
  readonly retryable?: (err: unknown) => boolean;
  readonly sleep?: (ms: number) => Promise<void>;
}

/**
 * Runs `fn` until it succeeds or the attempts run out, with exponential backoff and jitter
 * between tries. Rethrows the last failure.
 */
export async function withRetries<T>(
  fn: (attempt: number) => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const attempts = options.attempts ?? 5;
  const base = options.baseDelayMs ?? 200;
  const retryable =
    options.retryable ?? ((err) => !BackupError.is(err) || err.code === "ProviderFailure");
  const sleep = options.sleep ?? ((ms) => new Promise<void>((r) => setTimeout(r, ms)));
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= attempts || !retryable(err)) throw err;
      await sleep(base * 2 ** (attempt - 1) * (0.5 + Math.random()));
    }
  }
}

/** Collects an async byte stream into buffers of exactly `size` bytes (the last may be short). */
export async function* rechunk(
  body: AsyncIterable<Uint8Array>,
  size: number,
): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let length = 0;
  for await (const chunk of body) {
    let c = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    while (c.length > 0) {
      const take = Math.min(size - length, c.length);
      parts.push(c.subarray(0, take));
      length += take;
      c = c.subarray(take);
      if (length === size) {
        yield Buffer.concat(parts, length);
        parts = [];
        length = 0;
      }
    }
  }
  if (length > 0) yield Buffer.concat(parts, length);
}
