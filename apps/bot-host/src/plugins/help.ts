// @pairwise/bot-host/help: lists the commands the bot's plugins registered.
import { z } from "zod";
import { BotHostError } from "../internal/errors.ts";
import { definePlugin, type Plugin } from "../internal/plugin.ts";

const optionsSchema = z.object({ intro: z.string().max(500).default("Commands:") }).strict();

/** Options of the `help` plugin. */
export type HelpOptions = z.input<typeof optionsSchema>;

/**
 * The `help` plugin: answers `/help` with every command registered by the bot's plugins, one
 * per line with its description. Throws `BotHostError("PluginLoadFailed")` for bad options.
 */
export function help(options: HelpOptions = {}): Plugin {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success)
    throw new BotHostError("PluginLoadFailed", `help: invalid options: ${parsed.error.message}`);
  const { intro } = parsed.data;
  return definePlugin({
    name: "help",
    setup(bot) {
      bot.command({ name: "help", description: "lists the commands" }, async (ctx) => {
        const lines = bot
          .commands()
          .map((c) => (c.description ? `/${c.name} - ${c.description}` : `/${c.name}`));
        await ctx.reply([intro, ...lines].join("\n"));
      });
    },
  });
}

export default help;
