import { setTimeout as sleepFor } from "node:timers/promises";
import { ChangeSignal, SerialQueue, deferred } from "./async-primitives.ts";
import { backoffDelay, type BackoffPolicy } from "./backoff.ts";
import { TransportError } from "./errors.ts";
import { checkInteger } from "./limits.ts";
import { overrideTransport } from "./transport-proxy.ts";
import type {
  ReconnectState,
  ReconnectStateInfo,
  ReconnectingOptions,
  ReconnectingTransport,
} from "./reconnecting-options.ts";
import type { Connector, Transport, TransportClosed } from "./transport.ts";

interface Connection<T> {
  readonly generation: number;
  readonly transport: T;
  readonly frames: AsyncIterator<Uint8Array>;
}

const defaultSleep = (ms: number, signal: AbortSignal): Promise<void> =>
  sleepFor(ms, undefined, { signal }).catch(() => undefined);

const defaultShouldRetry = (error: unknown): boolean =>
  !TransportError.is(error, "ServerKeyMismatch") && !TransportError.is(error, "InvalidArgument");

class Reconnecting<T extends Transport> implements ReconnectingTransport<T> {
  readonly closed: Promise<TransportClosed>;
  readonly #connector: Connector<T>;
  readonly #options: ReconnectingOptions<T>;
  readonly #policy: BackoffPolicy;
  readonly #stableAfterMs: number;
  readonly #change = new ChangeSignal();
  readonly #abort = new AbortController();
  readonly #aborted: Promise<void>;
  readonly #closed = deferred<TransportClosed>();
  readonly #reads = new SerialQueue();
  readonly #loop: Promise<void>;
  #state: ReconnectState = "connecting";
  #connection: Connection<T> | undefined;
  #generation = 0;
  #stopError: TransportError | undefined;
  #claimed = false;

  constructor(connector: Connector<T>, options: ReconnectingOptions<T>) {
    this.#connector = connector;
    this.#options = options;
    const minDelayMs = checkInteger("minDelayMs", options.minDelayMs ?? 250, 0, 2 ** 31 - 1);
    this.#policy = {
      minDelayMs,
      maxDelayMs: checkInteger("maxDelayMs", options.maxDelayMs ?? 30_000, minDelayMs, 2 ** 31 - 1),
      factor: options.factor ?? 2,
      jitter: options.jitter ?? "full",
    };
    if (!(this.#policy.factor >= 1))
      throw new TransportError("InvalidArgument", "factor must be ≥ 1");
    if (options.maxAttempts !== undefined) {
      checkInteger("maxAttempts", options.maxAttempts, 1, Number.MAX_SAFE_INTEGER);
    }
    this.#stableAfterMs = checkInteger(
      "stableAfterMs",
      options.stableAfterMs ?? 10_000,
      0,
      2 ** 31 - 1,
    );
    this.closed = this.#closed.promise;
    this.#aborted = new Promise((resolve) => {
      this.#abort.signal.addEventListener("abort", () => {
        resolve();
      });
    });
    this.#loop = this.#run();
  }

  get state(): ReconnectState {
    return this.#state;
  }

  get current(): T | undefined {
    return this.#state === "connected" ? this.#connection?.transport : undefined;
  }

  async send(frame: Uint8Array): Promise<void> {
    for (;;) {
      if (this.#isStopped()) throw this.#stopError ?? closedError();
      const connection = this.#connection;
      if (connection && this.#state === "connected") {
        try {
          await connection.transport.send(frame);
          return;
        } catch (err) {
          // "Closed" means the frame never reached the socket whole (the peer drops a partial
          // one): send it on the next connection. Any other failure goes to the caller.
          if (!TransportError.is(err, "Closed") || this.#isStopped()) throw err;
          if (this.#connection === connection) await this.#change.wait();
          continue;
        }
      }
      await this.#change.wait();
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.#claimed) {
      throw new TransportError("InvalidState", "a transport has only one consumer");
    }
    this.#claimed = true;
    let reading: Connection<T> | undefined;
    let exhausted = 0;
    const next = async (): Promise<IteratorResult<Uint8Array>> => {
      for (;;) {
        if (!reading) {
          const connection = this.#connection;
          if (connection && connection.generation > exhausted && this.#state === "connected") {
            reading = connection;
          } else if (this.#isStopped()) {
            return { done: true, value: undefined };
          } else {
            await this.#change.wait();
            continue;
          }
        }
        try {
          const result = await reading.frames.next();
          if (result.done !== true) return result;
        } catch {
          // The connection failed; the supervisor sees it through `closed` and reconnects.
        }
        exhausted = reading.generation;
        reading = undefined;
      }
    };
    return {
      next: () => this.#reads.run(next),
      return: async () => {
        await this.close("consumer stopped");
        return { done: true, value: undefined };
      },
    };
  }

  async close(reason = "closed"): Promise<void> {
    this.#stop(reason);
    await this.#connection?.transport.close(reason);
    await this.#loop;
  }

  #stop(reason: string, error?: TransportError): void {
    if (this.#isStopped()) return;
    this.#stopError = error;
    this.#abort.abort();
    this.#setState("closed", { failures: 0, ...(error ? { error } : {}) });
    this.#closed.resolve(error ? { reason, error } : { reason });
  }

  #setState(state: ReconnectState, info: ReconnectStateInfo): void {
    this.#state = state;
    this.#change.notify();
    try {
      this.#options.onState?.(state, info);
    } catch {
      // an observer's failure must not stop reconnecting
    }
  }

  async #run(): Promise<void> {
    let failures = 0; // consecutive failed attempts (for maxAttempts)
    let level = 0; // backoff exponent: grows with failures and short-lived connections
    let lastError: unknown;
    const now = this.#options.now ?? Date.now;
    while (!this.#isStopped()) {
      if (level > 0 || failures > 0) {
        const delayMs = backoffDelay(this.#policy, level, this.#options.random ?? Math.random);
        this.#setState("disconnected", { failures, delayMs, error: lastError });
        const sleep = this.#options.sleep ?? defaultSleep;
        await Promise.race([sleep(delayMs, this.#abort.signal), this.#aborted]);
        if (this.#isStopped()) break;
      }
      this.#setState("connecting", { failures });
      const connection = await this.#open().catch((err: unknown) => err);
      if (this.#isStopped()) break;
      if (!isConnection<T>(connection)) {
        failures += 1;
        level += 1;
        lastError = connection;
        const retry = (this.#options.shouldRetry ?? defaultShouldRetry)(connection);
        const maxAttempts = this.#options.maxAttempts;
        if (!retry || (maxAttempts !== undefined && failures >= maxAttempts)) {
          this.#stop("gave up", asGiveUpError(connection));
        }
        continue;
      }
      failures = 0;
      this.#connection = connection;
      this.#setState("connected", { failures });
      const since = now();
      const ended: TransportClosed | undefined = await Promise.race([
        connection.transport.closed,
        this.#aborted.then(() => undefined),
      ]);
      if (this.#isStopped()) break;
      this.#connection = undefined;
      lastError = ended?.error;
      level = now() - since >= this.#stableAfterMs ? 1 : level + 1;
    }
    await this.#connection?.transport.close(this.#closedReason());
  }

  async #open(): Promise<Connection<T>> {
    // close() must not wait for a slow connect or onConnected: race both with the abort, and
    // close a transport that arrives after it.
    const connecting = this.#connector();
    const transport = await Promise.race([connecting, this.#aborted.then(() => undefined)]);
    if (transport === undefined || this.#isStopped()) {
      void connecting.then((late) => late.close(this.#closedReason())).catch(() => undefined);
      throw closedError();
    }
    const frames = transport[Symbol.asyncIterator]();
    try {
      // onConnected reads through the shared iterator; leaving its loop must not close.
      const view = overrideTransport(transport, {
        [Symbol.asyncIterator]: () => ({
          next: () => frames.next(),
          return: () => Promise.resolve({ done: true, value: undefined }),
        }),
      });
      const hook = Promise.resolve(this.#options.onConnected?.(view));
      hook.catch(() => undefined);
      await Promise.race([hook, this.#aborted]);
    } catch (err) {
      await transport.close("onConnected failed");
      throw err;
    }
    if (this.#isStopped()) {
      await transport.close(this.#closedReason());
      throw closedError();
    }
    this.#generation += 1;
    return { generation: this.#generation, transport, frames };
  }

  #isStopped(): boolean {
    return this.#abort.signal.aborted;
  }

  #closedReason(): string {
    return this.#stopError ? "gave up" : "closed";
  }
}

function isConnection<T>(value: unknown): value is Connection<T> {
  return typeof value === "object" && value !== null && "frames" in value && "generation" in value;
}

function closedError(): TransportError {
  return new TransportError("Closed", "transport is closed");
}

function asGiveUpError(error: unknown): TransportError {
  return TransportError.is(error)
    ? error
    : new TransportError("ConnectFailed", "gave up reconnecting", { cause: error });
}

/**
 * Wraps a connector into one long-lived transport that reconnects with exponential backoff
 * and full jitter (`random() × min(maxDelayMs, minDelayMs × factor^(n−1))` before retry `n`).
 * `send` waits for a connection; a frame the closing connection refused (`Closed`) is sent on
 * the next one, but a frame already handed to a socket that then dropped is not replayed — the
 * application protocol acknowledges what it needs;
 * the iterator yields frames across reconnects (each connection's frames in order, the old
 * connection's before the new one's) and ends only at `close()`. `onConnected` runs on every
 * new connection. The backoff resets once a connection has stayed up `stableAfterMs`.
 *
 * Throws `InvalidArgument` for bad options. After giving up (`maxAttempts` or `shouldRetry`),
 * `send` rejects with the last error (a `TransportError`, `ConnectFailed` if it was not one)
 * and `closed` resolves with it.
 */
export function reconnecting<T extends Transport>(
  connector: Connector<T>,
  options: ReconnectingOptions<T> = {},
): ReconnectingTransport<T> {
  return new Reconnecting(connector, options);
}
