import type { ParseArgsConfig } from "node:util";
import type { CliContext } from "./io.ts";

/** Option definitions, as `node:util` parseArgs takes them. */
export type ParseArgsOptionsConfig = NonNullable<ParseArgsConfig["options"]>;

/** Option values of one parsed command line. */
export type OptionValues = Record<string, string | boolean | undefined>;

/** A command's parsed arguments. */
export interface CommandArgs {
  values: OptionValues;
  /** Positionals after the command name. */
  positionals: string[];
}

/** One `pairwise <command>`: its options, help text and behaviour. */
export interface Command {
  name: string;
  /** One line for `pairwise --help`. */
  summary: string;
  /** The synopsis after `pairwise `, e.g. `send TO TEXT`. */
  synopsis: string;
  /** Longer help for `pairwise <command> --help` (lines, no trailing newline). */
  help: string;
  /** The command's own options (the global ones are added by the parser). */
  options: ParseArgsOptionsConfig;
  /** Names of the positionals, in order; the parser checks their count. */
  positionals: readonly string[];
  /**
   * The most the whole command may take before the CLI gives up (a safety net above the
   * per-request `--timeout`); `undefined`: no bound (the command waits for a person).
   */
  budgetMs(ctx: CliContext, args: CommandArgs): number | undefined;
  /** Whether the command handles Ctrl-C itself (stops waiting, finishes cleanly). */
  interruptible?: boolean;
  /** Runs the command; throws `CliError` or the runtime's `ClientError`. */
  run(ctx: CliContext, args: CommandArgs): Promise<void>;
}

/** The option value `name` as a string, if given. */
export function stringOption(values: OptionValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** The boolean option `name` (false when absent). */
export function flagOption(values: OptionValues, name: string): boolean {
  return values[name] === true;
}
