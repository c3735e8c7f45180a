import type { Connector, Transport } from "./transport.ts";
import { overrideTransport } from "./transport-proxy.ts";

/**
 * The logger `logging` writes to: a pino `Logger` fits (pino is an optional peer dependency),
 * as does anything with these three methods taking `(fields, message)`.
 */
export interface TransportLogger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

/** Options of {@link logging}. */
export interface LoggingOptions {
  /** Log every frame's direction and size at debug level (default true). */
  readonly frames?: boolean;
  /** Milliseconds clock for durations (default `Date.now`). */
  readonly now?: () => number;
}

function describeError(err: unknown): Record<string, unknown> {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { name: err.name, message: err.message, ...(typeof code === "string" ? { code } : {}) };
  }
  return { message: "non-error thrown" };
}

/**
 * Wraps a connector so every connection it opens is logged: connect attempts and failures,
 * open, close (reason, error, duration) and frame counts and sizes in both directions. Frame
 * contents are never logged, nor keys. Each connection gets a sequence number `conn`.
 *
 * The connector throws what the wrapped connector throws (after logging it).
 */
export function logging<T extends Transport>(
  connector: Connector<T>,
  logger: TransportLogger,
  options: LoggingOptions = {},
): Connector<T> {
  const now = options.now ?? Date.now;
  const logFrames = options.frames ?? true;
  let sequence = 0;
  return async () => {
    const conn = ++sequence;
    const started = now();
    logger.debug({ conn }, "transport connecting");
    let transport: T;
    try {
      transport = await connector();
    } catch (err) {
      logger.warn(
        { conn, ms: now() - started, err: describeError(err) },
        "transport connect failed",
      );
      throw err;
    }
    const opened = now();
    logger.info({ conn, ms: opened - started }, "transport open");
    const counts = { framesIn: 0, bytesIn: 0, framesOut: 0, bytesOut: 0 };
    void transport.closed.then(({ reason, error }) => {
      const fields = { conn, reason, ms: now() - opened, ...counts };
      if (error) logger.warn({ ...fields, err: describeError(error) }, "transport failed");
      else logger.info(fields, "transport closed");
    });
    return overrideTransport(transport, {
      send: async (frame) => {
        await transport.send(frame);
        counts.framesOut += 1;
        counts.bytesOut += frame.byteLength;
        if (logFrames) logger.debug({ conn, dir: "out", bytes: frame.byteLength }, "frame");
      },
      [Symbol.asyncIterator]: () => {
        const frames = transport[Symbol.asyncIterator]();
        return {
          next: async () => {
            const result = await frames.next();
            if (result.done !== true) {
              counts.framesIn += 1;
              counts.bytesIn += result.value.byteLength;
              if (logFrames) {
                logger.debug({ conn, dir: "in", bytes: result.value.byteLength }, "frame");
              }
            }
            return result;
          },
          return: async () => (frames.return ? frames.return() : { done: true, value: undefined }),
        };
      },
    });
  };
}
