/** Defaults and fixed sizes shared by every transport of this package. */
import { TransportError } from "./errors.ts";

/** Largest application frame a transport accepts unless configured otherwise (4 MiB). */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** Frames a transport buffers for a consumer that does not pull before it stops reading. */
export const DEFAULT_MAX_BUFFERED_FRAMES = 64;

/** Bytes queued in a socket's user-space buffer above which `send` waits (1 MiB). */
export const DEFAULT_HIGH_WATER_MARK_BYTES = 1024 * 1024;

/** Largest Noise message (Noise spec rev 34, section 3). */
export const NOISE_MAX_MESSAGE_BYTES = 65535;

/** AES-GCM authentication tag appended to every encrypted Noise payload. */
export const NOISE_TAG_BYTES = 16;

/** X25519 key and DH output length. */
export const NOISE_KEY_BYTES = 32;

/** Default time a Noise handshake may take before it fails with `Timeout`. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** `value` if it is an integer within [min, max], else `TransportError("InvalidArgument")`. */
export function checkInteger(name: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new TransportError("InvalidArgument", `${name} must be an integer in [${min}, ${max}]`);
  }
  return value;
}
