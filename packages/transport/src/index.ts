// @pairwise/transport: how authenticated, encrypted frames travel between a Pairwise device and
// a server. Named exports only; providers live in the ./websocket and ./memory subpaths.
export { TransportError, type TransportErrorCode } from "./internal/errors.ts";
export type {
  Connector,
  SecureTransport,
  Transport,
  TransportClosed,
} from "./internal/transport.ts";

export {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_HIGH_WATER_MARK_BYTES,
  DEFAULT_MAX_BUFFERED_FRAMES,
  DEFAULT_MAX_FRAME_BYTES,
  NOISE_MAX_MESSAGE_BYTES,
} from "./internal/limits.ts";
export {
  generateNoiseKeyPair,
  noiseKeyPairFromPrivateKey,
  type NoiseKeyPair,
} from "./internal/noise-keys.ts";
export { NOISE_PROTOCOL_NAME } from "./internal/noise-handshake.ts";
export { NOISE_CHUNK_BYTES } from "./internal/secure-transport.ts";
export {
  noise,
  noiseInitiator,
  noiseResponder,
  type NoiseInitiatorOptions,
  type NoiseOptions,
  type NoiseResponderOptions,
} from "./internal/noise-connect.ts";

export { lengthPrefixed, type LengthPrefixedOptions } from "./internal/length-prefixed.ts";

export { reconnecting } from "./internal/reconnecting.ts";
export type {
  ReconnectState,
  ReconnectStateInfo,
  ReconnectingOptions,
  ReconnectingTransport,
} from "./internal/reconnecting-options.ts";
export { logging, type LoggingOptions, type TransportLogger } from "./internal/logging.ts";
