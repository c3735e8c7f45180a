import { parseArgs } from "node:util";
import type { Command, CommandArgs, ParseArgsOptionsConfig } from "./command.ts";
import { usageError } from "./errors.ts";

/** Options every command takes. */
export const GLOBAL_OPTIONS = {
  home: { type: "string" },
  json: { type: "boolean" },
  timeout: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsOptionsConfig;

/** The global settings as given on the command line (defaults are applied by the caller). */
export interface GlobalArgs {
  home?: string;
  json: boolean;
  /** `--timeout` in ms, if given. */
  timeoutMs?: number;
}

/** What a command line asks for. */
export type ParsedCommandLine =
  | { kind: "help"; command?: Command }
  | { kind: "run"; command: Command; globals: GlobalArgs; args: CommandArgs };

/** Node's parse error without its advice about `--` (kept to one line). */
function parseErrorMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return (message.split(/\.\s/)[0] ?? message).replace(/\.$/, "");
}

function parse(argv: readonly string[], options: ParseArgsOptionsConfig) {
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
  } catch (err) {
    throw usageError(parseErrorMessage(err));
  }
}

/** A number of seconds from an option: finite, ≥ `min`, at most a day. */
export function parseSeconds(value: string, option: string, min: number): number {
  const n = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n) || n < min || n > 86_400)
    throw usageError(`${option} must be a number of seconds${min > 0 ? " above 0" : ""}`);
  return n;
}

/**
 * Parses `argv` (without node and the script) against the command table. Global options may
 * stand before or after the command. Throws `CliError("Usage")` with a one-line message.
 */
export function parseCommandLine(
  argv: readonly string[],
  commands: readonly Command[],
): ParsedCommandLine {
  // First pass: every option any command knows, to find the command name.
  const all: ParseArgsOptionsConfig = { ...GLOBAL_OPTIONS };
  for (const c of commands) Object.assign(all, c.options);
  const first = parse(argv, all);
  const [name, ...rest] = first.positionals;
  if (name === undefined) {
    if (first.values.help === true) return { kind: "help" };
    throw usageError("missing command");
  }
  if (name === "help") {
    const about = rest[0] === undefined ? undefined : commands.find((c) => c.name === rest[0]);
    if (rest[0] !== undefined && !about) throw usageError(`unknown command '${rest[0]}'`);
    return about ? { kind: "help", command: about } : { kind: "help" };
  }
  const command = commands.find((c) => c.name === name);
  if (!command) throw usageError(`unknown command '${name}'`);
  // Second pass: only the global options and this command's own.
  const { values, positionals } = parse(argv, { ...GLOBAL_OPTIONS, ...command.options });
  if (values.help === true) return { kind: "help", command };
  const given = positionals.slice(1);
  const wanted = command.positionals;
  // A last positional named `X...` takes the rest of the line (possibly nothing: the command
  // checks what it needs).
  const variadic = wanted.at(-1)?.endsWith("...") === true;
  if (given.length < wanted.length - (variadic ? 1 : 0))
    throw usageError(`${name}: missing ${wanted.slice(given.length).join(" ")}`);
  if (given.length > wanted.length && !variadic)
    throw usageError(`${name}: unexpected argument '${given[wanted.length] ?? ""}'`);
  const globals: GlobalArgs = { json: values.json === true };
  if (typeof values.home === "string") {
    if (values.home === "") throw usageError("--home must not be empty");
    globals.home = values.home;
  }
  if (typeof values.timeout === "string")
    globals.timeoutMs = Math.round(parseSeconds(values.timeout, "--timeout", 0.001) * 1000);
  const own: CommandArgs["values"] = {};
  for (const key of Object.keys(command.options)) {
    const v = values[key];
    own[key] = Array.isArray(v) ? v.at(-1) : v; // no option is `multiple`: the last one wins
  }
  return { kind: "run", command, globals, args: { values: own, positionals: given } };
}
