import { join } from "node:path";
import { parseCommandLine } from "./args.ts";
import type { Command, CommandArgs } from "./command.ts";
import { COMMANDS } from "./command-table.ts";
import { CliError } from "./errors.ts";
import { commandHelp, generalHelp } from "./help.ts";
import type { CliContext, CliIo } from "./io.ts";
import { describeFailure } from "./output.ts";

/** Default of `--timeout`. */
export const DEFAULT_TIMEOUT_MS = 15_000;

/**
 * Runs the command whose safety-net budget is `budgetMs` and stops it early on an interrupt
 * (unless it handles interrupts itself). Leftover work is cut off by the caller's exit.
 */
function bounded(ctx: CliContext, command: Command, args: CommandArgs): Promise<void> {
  const budgetMs = command.budgetMs(ctx, args);
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const stops: Promise<never>[] = [];
  if (budgetMs !== undefined)
    stops.push(
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new CliError("Timeout", `gave up after ${String(budgetMs / 1000)} s`));
        }, budgetMs);
      }),
    );
  if (!command.interruptible)
    stops.push(
      new Promise<never>((_, reject) => {
        onAbort = () => {
          reject(new CliError("Interrupted", "interrupted"));
        };
        if (ctx.io.signal.aborted) onAbort();
        else ctx.io.signal.addEventListener("abort", onAbort, { once: true });
      }),
    );
  return Promise.race([command.run(ctx, args), ...stops]).finally(() => {
    clearTimeout(timer);
    if (onAbort) ctx.io.signal.removeEventListener("abort", onAbort);
  });
}

/**
 * Runs one `pairwise` command line (`argv` without node and the script) and returns the exit
 * status: 0 success, 1 failure, 2 usage error, 130 interrupted. Failures are reported as one
 * line on stderr; nothing throws.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandLine(argv, COMMANDS);
  } catch (err) {
    const { exitCode, message } = describeFailure(err);
    io.stderr(`pairwise: ${message} (see 'pairwise --help')\n`);
    return exitCode;
  }
  if (parsed.kind === "help") {
    io.stdout(parsed.command ? commandHelp(parsed.command) : generalHelp(COMMANDS));
    return 0;
  }
  const { command, globals, args } = parsed;
  const ctx: CliContext = {
    io,
    home: globals.home ?? join(io.homeDir, ".pairwise"),
    json: globals.json,
    timeoutMs: globals.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    timeoutGiven: globals.timeoutMs !== undefined,
  };
  try {
    await bounded(ctx, command, args);
    return 0;
  } catch (err) {
    const { exitCode, message } = describeFailure(err);
    const hint = exitCode === 2 ? ` (see 'pairwise ${command.name} --help')` : "";
    io.stderr(`pairwise: ${message}${hint}\n`);
    if (io.debug && err instanceof Error && err.stack) io.stderr(`${err.stack}\n`);
    return exitCode;
  }
}
