// @pairwise/interop-adapters/telegram: a Telegram bridge built on grammY (grammY and
// @grammyjs/auto-retry are optional peer dependencies of this subpath). Named exports only.
export {
  BRIDGE_NOTICE,
  TELEGRAM_CAPABILITIES,
  TelegramBridge,
  createTelegramBridge,
  isPassingTelegramFailure,
  telegramKind,
  type BridgedMessage,
  type DeviceTelegramBridge,
  type PairwiseSide,
  type TelegramBridgeCoreOptions,
  type TelegramBridgeOptions,
  type TelegramChatMapping,
} from "./internal/telegram/bridge.ts";
