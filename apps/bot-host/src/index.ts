// @pairwise/bot-host: the plugin API and the host. Named exports only; implementation lives in
// ./internal. Built-in plugins are subpaths: /echo, /auto-reply, /webhook, /help.
export { BotHostError, type BotHostErrorCode } from "./internal/errors.ts";
export {
  Composer,
  type CommandContext,
  type CommandInfo,
  type ErrorHandler,
  type Filtered,
  type HearsContext,
  type Middleware,
  type NextFunction,
} from "./internal/composer.ts";
export { Context, type BotIdentity } from "./internal/context.ts";
export {
  BotApi,
  type ApiCaller,
  type ApiCalls,
  type ApiMethod,
  type Transformer,
} from "./internal/api.ts";
export {
  definePlugin,
  PluginBot,
  type Plugin,
  type PluginFactory,
  type RouteHandler,
} from "./internal/plugin.ts";
export type {
  BotGroupUpdate,
  BotMessage,
  Chat,
  FilterQuery,
  GroupFor,
  GroupQuery,
  MessageFor,
  Sender,
  Update,
} from "./internal/update.ts";
export {
  Bot,
  type BotCounters,
  type BotSettings,
  type BotSnapshot,
  type BotState,
} from "./internal/bot.ts";
export {
  CONFIG_FILE_NAMES,
  botHostConfigSchema,
  loadConfigFile,
  parseConfig,
  type BotBackupConfig,
  type BotConfig,
  type BotHostConfig,
  type PluginSpec,
} from "./internal/config.ts";
export type { BackupStatus } from "./internal/backups.ts";
export { startBotHost, type RunningBotHost, type StartBotHostOptions } from "./internal/host.ts";
