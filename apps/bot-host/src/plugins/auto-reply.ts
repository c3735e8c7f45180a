// @pairwise/bot-host/auto-reply: keyword or regex rules answered from config.
import { z } from "zod";
import { BotHostError } from "../internal/errors.ts";
import { definePlugin, type Plugin } from "../internal/plugin.ts";

const ruleSchema = z
  .object({
    /** A word or phrase the text contains (case-insensitive). */
    keyword: z.string().min(1).max(200).optional(),
    /** A regular expression source the text matches. */
    pattern: z.string().min(1).max(500).optional(),
    /** Regex flags (default "i"). */
    flags: z
      .string()
      .regex(/^[imsu]*$/)
      .default("i"),
    answer: z.string().min(1).max(4000),
  })
  .strict()
  .refine((r) => (r.keyword === undefined) !== (r.pattern === undefined), {
    message: "each rule needs exactly one of `keyword` or `pattern`",
  });

const optionsSchema = z.object({ rules: z.array(ruleSchema).min(1).max(1000) }).strict();

/** Options of the `auto-reply` plugin. */
export type AutoReplyOptions = z.input<typeof optionsSchema>;

/**
 * The `auto-reply` plugin: the first rule whose keyword the text contains (case-insensitive,
 * whole words) or whose regex matches it is answered with the rule's `answer`; other texts go on
 * to later plugins. Throws `BotHostError("PluginLoadFailed")` for bad options or a bad regex.
 */
export function autoReply(options: AutoReplyOptions): Plugin {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success)
    throw new BotHostError(
      "PluginLoadFailed",
      `auto-reply: invalid options: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
  const rules = parsed.data.rules.map((r, i) => {
    try {
      const regex =
        r.pattern !== undefined
          ? new RegExp(r.pattern, r.flags)
          : new RegExp(
              `(^|\\W)${r.keyword?.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") ?? ""}($|\\W)`,
              "i",
            );
      return { regex, answer: r.answer };
    } catch (cause) {
      throw new BotHostError(
        "PluginLoadFailed",
        `auto-reply: rules.${i}.pattern is not a valid regex`,
        {
          cause,
        },
      );
    }
  });
  return definePlugin({
    name: "auto-reply",
    setup(bot) {
      bot.on("message:text", async (ctx, next) => {
        const rule = rules.find((r) => r.regex.test(ctx.message.text));
        if (!rule) {
          await next();
          return;
        }
        await ctx.reply(rule.answer);
      });
    },
  });
}

export default autoReply;
