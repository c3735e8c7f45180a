// @pairwise/bot-host/telegram-bridge: bridges the bot's Pairwise chats to Telegram chats through
// a Telegram bot (grammY, from @pairwise/interop-adapters/telegram).
import { join } from "node:path";
import {
  TelegramBridge,
  isPassingTelegramFailure,
  type TelegramBridgeCoreOptions,
} from "@pairwise/interop-adapters/telegram";
import { z } from "zod";
import { BotHostError } from "../internal/errors.ts";
import { definePlugin, type Plugin } from "../internal/plugin.ts";

const optionsSchema = z
  .object({
    /** The Telegram bot token (from @BotFather). */
    token: z.string().regex(/^\d+:[A-Za-z0-9_-]+$/, "a Telegram bot token"),
    /** Which Pairwise chat (an account) goes to which Telegram chat id. */
    chats: z
      .array(
        z.object({ pairwise: z.string().min(1).max(200), telegram: z.number().int() }).strict(),
      )
      .min(1),
    /** Bot API root (a local Bot API server); default https://api.telegram.org. */
    apiRoot: z
      .string()
      .url()
      .regex(/^https?:\/\//)
      .optional(),
    /** Where files from Telegram wait before they are sent on (default: a temp dir). */
    filesDir: z.string().min(1).optional(),
    /** getUpdates long-poll timeout in seconds (default 30). */
    pollTimeoutSeconds: z.number().int().min(0).max(50).optional(),
  })
  .strict();

/** Options of the `telegram-bridge` plugin. */
export type TelegramBridgePluginOptions = z.input<typeof optionsSchema>;

/**
 * The `telegram-bridge` plugin: messages in a mapped Pairwise chat go to its Telegram chat (text,
 * photos, voice notes, videos, files; a message is acknowledged once Telegram accepted it), and
 * messages in the Telegram chat come to the Pairwise chat through this bot. Before anything
 * crosses, the Pairwise side is told the chat is not end-to-end encrypted beyond the bridge.
 * Rate limits (429) are retried after `retry_after`. Throws `BotHostError("PluginLoadFailed")`
 * for bad options; a token Telegram refuses fails the plugin's setup.
 */
export function telegramBridge(options: TelegramBridgePluginOptions): Plugin {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success)
    throw new BotHostError(
      "PluginLoadFailed",
      `telegram-bridge: invalid options: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
  const o = parsed.data;
  return definePlugin({
    name: "telegram-bridge",
    async setup(bot) {
      const core: TelegramBridgeCoreOptions = {
        token: o.token,
        chats: o.chats,
        ...(o.apiRoot ? { apiRoot: o.apiRoot } : {}),
        ...(o.filesDir ? { filesDir: o.filesDir } : {}),
        ...(o.pollTimeoutSeconds !== undefined ? { pollTimeoutSeconds: o.pollTimeoutSeconds } : {}),
        // Replies keep their reference across restarts of the host.
        messageIdsFile: join(bot.dataDir, "message-ids.db"),
      };
      const bridge = new TelegramBridge(
        {
          sendText: async (chat, text, opts) => (await bot.api.sendText(chat, text, opts)).id,
          sendFile: async (chat, path, opts) =>
            (await bot.api.sendFile(chat, path, opts.caption ? { caption: opts.caption } : {})).id,
        },
        core,
      );
      bridge.onState((s) => bot.log.info({ state: s.state, reason: s.reason }, "telegram bridge"));
      bot.on("message", async (ctx, next) => {
        if (!bridge.bridges(ctx.chat.id)) {
          await next();
          return;
        }
        try {
          await bridge.forward({
            id: ctx.message.id,
            chat: ctx.chat.id,
            fromAccount: ctx.from.account,
            ...(ctx.message.text !== undefined ? { text: ctx.message.text } : {}),
            ...(ctx.message.file !== undefined ? { file: ctx.message.file } : {}),
            ...(ctx.message.replyTo !== undefined ? { replyTo: ctx.message.replyTo } : {}),
          });
        } catch (err) {
          // Telegram unreachable: the message stays unacknowledged and is forwarded again later.
          if (isPassingTelegramFailure(err))
            throw new BotHostError("RetryLater", "Telegram could not be reached", { cause: err });
          throw err;
        }
      });
      bot.onStop(() => bridge.stop());
      await bridge.start();
    },
  });
}

export default telegramBridge;
