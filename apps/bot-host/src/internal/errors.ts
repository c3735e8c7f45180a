/** Why a bot-host operation failed. */
export type BotHostErrorCode =
  /** The config file is missing, unreadable or invalid. */
  | "InvalidConfig"
  /** A plugin could not be resolved, imported or did not have the plugin shape. */
  | "PluginLoadFailed"
  /** A bot's state directory or database cannot be opened or written. */
  | "StorageFailure"
  /** A request to the host's HTTP server lacked valid credentials. */
  | "Unauthorized"
  /** A request or call had a bad argument. */
  | "InvalidArgument"
  /** The bot is not linked and connected, so it cannot send. */
  | "NotConnected"
  /**
   * Thrown by a plugin that could not finish a handling for a passing reason (a service it
   * forwards to is unreachable): the message is not acknowledged, and the host runs the handling
   * again after a backoff (effects recorded through the context are not repeated).
   */
  | "RetryLater"
  /** No bot or plugin by that name. */
  | "NotFound";

/**
 * The one error class of `@pairwise/bot-host`. Messages never contain message bodies or keys.
 * Use {@link BotHostError.is} to narrow by code.
 */
export class BotHostError<C extends BotHostErrorCode = BotHostErrorCode> extends Error {
  override readonly name = "BotHostError";
  readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  /** Whether `err` is a `BotHostError` (with `code`, if given). */
  static is<C extends BotHostErrorCode>(err: unknown, code?: C): err is BotHostError<C> {
    return err instanceof BotHostError && (code === undefined || err.code === code);
  }
}
