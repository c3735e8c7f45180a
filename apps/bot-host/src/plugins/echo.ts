// @pairwise/bot-host/echo: replies with the text it got.
import { z } from "zod";
import { BotHostError } from "../internal/errors.ts";
import { definePlugin, type Plugin } from "../internal/plugin.ts";

const optionsSchema = z.object({ prefix: z.string().max(200).default("") }).strict();

/** Options of the `echo` plugin. */
export type EchoOptions = z.input<typeof optionsSchema>;

/**
 * The `echo` plugin: answers every text message (that an earlier plugin did not handle) with
 * the same text, after an optional `prefix`. Throws `BotHostError("PluginLoadFailed")` for bad
 * options.
 */
export function echo(options: EchoOptions = {}): Plugin {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success)
    throw new BotHostError("PluginLoadFailed", `echo: invalid options: ${parsed.error.message}`);
  const { prefix } = parsed.data;
  return definePlugin({
    name: "echo",
    setup(bot) {
      bot.on("message:text", async (ctx) => {
        await ctx.reply(`${prefix}${ctx.message.text}`);
      });
    },
  });
}

export default echo;
