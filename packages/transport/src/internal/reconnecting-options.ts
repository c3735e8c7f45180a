import type { Transport } from "./transport.ts";

/** Where a {@link ReconnectingTransport} is in its life. */
export type ReconnectState = "connecting" | "connected" | "disconnected" | "closed";

/** Details passed to `onState`. */
export interface ReconnectStateInfo {
  /** Consecutive failed connection attempts so far. */
  readonly failures: number;
  /** For `"disconnected"`: the wait before the next attempt (ms). */
  readonly delayMs?: number;
  /** Why the last attempt failed or the last connection ended, when known. */
  readonly error?: unknown;
}

/** Options of {@link reconnecting}. */
export interface ReconnectingOptions<T extends Transport> {
  /** Backoff cap of the first retry (default 250 ms). */
  readonly minDelayMs?: number;
  /** Largest backoff (default 30 000 ms). */
  readonly maxDelayMs?: number;
  /** Growth of the backoff cap per consecutive failure (default 2). */
  readonly factor?: number;
  /** `"full"` (default): wait a uniform random time in [0, cap); `"none"`: the cap. */
  readonly jitter?: "full" | "none";
  /** Give up (state `"closed"`) after this many consecutive failed attempts (default: never). */
  readonly maxAttempts?: number;
  /** A connection that lasted this long resets the backoff (default 10 000 ms). */
  readonly stableAfterMs?: number;
  /** Whether a failed attempt is worth retrying (default: all but `ServerKeyMismatch`). */
  readonly shouldRetry?: (error: unknown) => boolean;
  /** Observes state changes (exceptions are ignored). */
  readonly onState?: (state: ReconnectState, info: ReconnectStateInfo) => void;
  /**
   * Runs on every new connection before it counts as connected (re-authenticate, resubscribe).
   * It may send and read frames on the transport it gets; queued `send`s and the consumer wait
   * until it resolves. If it throws, the connection is closed and counts as a failed attempt.
   */
  readonly onConnected?: (transport: T) => void | Promise<void>;
  /** Randomness for the jitter, in [0, 1) (default `Math.random`). */
  readonly random?: () => number;
  /** Waits `ms` or until `signal` aborts (default: `timers/promises` setTimeout). */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Milliseconds clock for the stability check (default `Date.now`). */
  readonly now?: () => number;
}

/** A long-lived transport that reconnects through a connector (see {@link reconnecting}). */
export interface ReconnectingTransport<T extends Transport = Transport> extends Transport {
  /** The current state. */
  readonly state: ReconnectState;
  /** The current connection while `state` is `"connected"`. */
  readonly current: T | undefined;
}
