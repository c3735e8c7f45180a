// @pairwise/server: the relay as a library (tests, embedding, the bot host's quick start).
export { ServerError, type ServerErrorCode } from "./internal/errors.ts";
export {
  configFromEnv,
  readConfigFile,
  resolveConfig,
  serverConfigSchema,
  type ServerConfig,
  type ServerConfigInput,
} from "./internal/config.ts";
export {
  loadServerKey,
  startServer,
  type RunningServer,
  type StartServerOptions,
} from "./internal/server.ts";
export { Relay, type RelayOptions } from "./internal/relay.ts";
export {
  openSqliteServerStore,
  type SqliteServerStoreOptions,
} from "./internal/store/sqlite-server-store.ts";
export type {
  AccountRecord,
  DeviceRecord,
  GroupRecord,
  NewDevice,
  OneTimePreKeyRecord,
  PreKeyBundleRecord,
  PreKeyUpload,
  QueueInsert,
  QueuedMessage,
  ServerStore,
  SignedPreKeyRecord,
} from "./internal/store/server-store.ts";
