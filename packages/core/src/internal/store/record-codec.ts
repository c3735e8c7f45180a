import { CoreError } from "../errors.ts";

/**
 * JSON codec for the small structured records a device keeps (contact keys, device-list cache,
 * local identity): bytes become `{"$b": base64}`. Decoding is checked by the caller's `parse`,
 * and a record that isn't JSON is `CoreError("StorageFailure")`: a corrupt database, not input.
 */
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeRecord(value: unknown): Uint8Array {
  return encoder.encode(
    JSON.stringify(value, (_key, v: unknown) =>
      v instanceof Uint8Array
        ? { $b: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") }
        : v,
    ),
  );
}

export function decodeRecord<T>(
  bytes: Uint8Array,
  what: string,
  parse: (raw: unknown) => T | undefined,
): T {
  let raw: unknown;
  try {
    raw = JSON.parse(decoder.decode(bytes), (_key, v: unknown) => {
      if (v !== null && typeof v === "object" && "$b" in v && typeof v.$b === "string") {
        return new Uint8Array(Buffer.from(v.$b, "base64"));
      }
      return v;
    });
  } catch (cause) {
    throw new CoreError("StorageFailure", `stored ${what} is corrupt`, { cause });
  }
  const parsed = parse(raw);
  if (parsed === undefined) throw new CoreError("StorageFailure", `stored ${what} is corrupt`);
  return parsed;
}

/** Narrowing helpers for `parse` callbacks. */
export const is = {
  object: (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v),
  bytes: (v: unknown): v is Uint8Array => v instanceof Uint8Array,
  int: (v: unknown): v is number => Number.isSafeInteger(v),
  string: (v: unknown): v is string => typeof v === "string",
};
