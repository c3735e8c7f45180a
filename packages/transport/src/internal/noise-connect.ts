import { timingSafeEqual } from "node:crypto";
import { TransportError } from "./errors.ts";
import {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_FRAME_BYTES,
  NOISE_KEY_BYTES,
  checkInteger,
} from "./limits.ts";
import { XxHandshake } from "./noise-handshake.ts";
import { checkNoiseKeyPair, type NoiseKeyPair } from "./noise-keys.ts";
import { createSecureTransport } from "./secure-transport.ts";
import type { Connector, SecureTransport, Transport } from "./transport.ts";

/** Options both sides of a Noise handshake take. */
export interface NoiseOptions {
  /** This side's long-term X25519 key pair (see `generateNoiseKeyPair`). */
  readonly staticKeyPair: NoiseKeyPair;
  /** Bytes both sides must agree on, bound into the handshake hash (default: empty). */
  readonly prologue?: Uint8Array;
  /** Time the whole handshake may take (default 10 000 ms); then `TransportError("Timeout")`. */
  readonly handshakeTimeoutMs?: number;
  /** Largest application frame sent or accepted after the handshake (default 4 MiB). */
  readonly maxFrameBytes?: number;
}

/** Options of the client side ({@link noiseInitiator}, {@link noise}). */
export interface NoiseInitiatorOptions extends NoiseOptions {
  /**
   * The server's pinned static public key. When set, a server presenting another key is refused
   * with `ServerKeyMismatch` before the client reveals its own static key.
   */
  readonly serverPublicKey?: Uint8Array;
  /**
   * Called with the server's static key when no key is pinned (trust on first use), before the
   * handshake completes, so the caller can store it and pin it next time. If it throws, the
   * handshake fails with `HandshakeFailed` (the thrown error as `cause`).
   */
  readonly onServerKey?: (serverPublicKey: Uint8Array) => void | Promise<void>;
}

/** Options of the server side ({@link noiseResponder}). */
export type NoiseResponderOptions = NoiseOptions;

interface Settings {
  readonly timeoutMs: number;
  readonly maxFrameBytes: number;
}

function settings(options: NoiseOptions): Settings {
  checkNoiseKeyPair(options.staticKeyPair);
  return {
    timeoutMs: checkInteger(
      "handshakeTimeoutMs",
      options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      1,
      2 ** 31 - 1,
    ),
    maxFrameBytes: checkInteger(
      "maxFrameBytes",
      options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      1,
      2 ** 31,
    ),
  };
}

async function readHandshakeMessage(frames: AsyncIterator<Uint8Array>): Promise<Uint8Array> {
  const next = await frames.next();
  if (next.done === true) {
    throw new TransportError("HandshakeFailed", "connection closed during the handshake");
  }
  return next.value;
}

/**
 * Runs `steps` with the handshake deadline; on any failure closes `transport` (reason = the
 * error code) and throws a TransportError: `Timeout`, `ServerKeyMismatch`, `InvalidArgument`,
 * or `HandshakeFailed` (with the cause) for everything else.
 */
async function withHandshakeGuard<T>(
  transport: Transport,
  timeoutMs: number,
  steps: () => Promise<T>,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new TransportError("Timeout", "Noise handshake timed out"));
    }, timeoutMs);
  });
  const work = steps();
  // If the deadline wins, `work` fails later once the transport is closed: nobody awaits it.
  work.catch(() => undefined);
  try {
    return await Promise.race([work, deadline]);
  } catch (err) {
    const error =
      TransportError.is(err, "Timeout") ||
      TransportError.is(err, "ServerKeyMismatch") ||
      TransportError.is(err, "InvalidArgument") ||
      TransportError.is(err, "HandshakeFailed")
        ? err
        : new TransportError("HandshakeFailed", "Noise handshake failed", { cause: err });
    await transport.close(error.code);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}

/**
 * Runs the client side of Noise_XX_25519_AESGCM_SHA256 over a fresh raw transport and returns
 * the encrypted transport. Handshake payloads are empty (reserved; a peer's are ignored).
 *
 * Throws `TransportError` after closing `transport`: `ServerKeyMismatch` (pinned key differs),
 * `Timeout`, `HandshakeFailed` (malformed or unauthenticated message, connection lost),
 * `InvalidArgument` (bad key or option).
 */
export async function noiseInitiator(
  transport: Transport,
  options: NoiseInitiatorOptions,
): Promise<SecureTransport> {
  const { timeoutMs, maxFrameBytes } = settings(options);
  const pinned = options.serverPublicKey;
  if (pinned !== undefined && pinned.byteLength !== NOISE_KEY_BYTES) {
    throw new TransportError("InvalidArgument", "serverPublicKey must be 32 bytes");
  }
  return withHandshakeGuard(transport, timeoutMs, async () => {
    const frames = transport[Symbol.asyncIterator]();
    const handshake = new XxHandshake({
      initiator: true,
      staticKeyPair: options.staticKeyPair,
      ...(options.prologue ? { prologue: options.prologue } : {}),
    });
    await transport.send(handshake.writeMessage());
    handshake.readMessage(await readHandshakeMessage(frames));
    const serverKey = handshake.remoteStaticKey;
    if (!serverKey) throw new TransportError("HandshakeFailed", "no server static key");
    if (pinned !== undefined) {
      if (!sameKey(pinned, serverKey)) {
        throw new TransportError("ServerKeyMismatch", "server static key differs from the pin");
      }
    } else {
      await options.onServerKey?.(serverKey);
    }
    await transport.send(handshake.writeMessage());
    return createSecureTransport({
      raw: transport,
      rawFrames: frames,
      handshake: handshake.result(),
      maxFrameBytes,
    });
  });
}

/**
 * Runs the server side of Noise_XX_25519_AESGCM_SHA256 over an accepted raw transport. The
 * returned transport's `remoteStaticKey` is the client's authenticated static key: the server
 * decides what it identifies.
 *
 * Throws `TransportError` after closing `transport`: `Timeout`, `HandshakeFailed`,
 * `InvalidArgument`.
 */
export async function noiseResponder(
  transport: Transport,
  options: NoiseResponderOptions,
): Promise<SecureTransport> {
  const { timeoutMs, maxFrameBytes } = settings(options);
  return withHandshakeGuard(transport, timeoutMs, async () => {
    const frames = transport[Symbol.asyncIterator]();
    const handshake = new XxHandshake({
      initiator: false,
      staticKeyPair: options.staticKeyPair,
      ...(options.prologue ? { prologue: options.prologue } : {}),
    });
    handshake.readMessage(await readHandshakeMessage(frames));
    await transport.send(handshake.writeMessage());
    handshake.readMessage(await readHandshakeMessage(frames));
    return createSecureTransport({
      raw: transport,
      rawFrames: frames,
      handshake: handshake.result(),
      maxFrameBytes,
    });
  });
}

/**
 * Composes a raw connector with the client side of the Noise handshake:
 * `reconnecting(noise(websocketConnector({ url }), { staticKeyPair, serverPublicKey }))`.
 * Without a pinned key, the first server key seen is reported to `onServerKey` and pinned for
 * every later connection made through this connector.
 *
 * The connector throws what the raw connector throws, or what {@link noiseInitiator} throws.
 */
export function noise(
  connector: Connector,
  options: NoiseInitiatorOptions,
): Connector<SecureTransport> {
  settings(options);
  let pinned = options.serverPublicKey;
  return async () => {
    const raw = await connector();
    const { serverPublicKey: _ignored, ...rest } = options;
    return noiseInitiator(
      raw,
      pinned
        ? { ...rest, serverPublicKey: pinned }
        : {
            ...rest,
            onServerKey: async (key) => {
              await options.onServerKey?.(key);
              pinned = key;
            },
          },
    );
  };
}
