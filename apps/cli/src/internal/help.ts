import type { Command } from "./command.ts";

const GLOBAL_HELP = `Global options (before or after the command):
  --home DIR         the device's home directory (default ~/.pairwise); one home is one device
  --json             print exactly one JSON value on stdout (receive: one JSON line per message)
  --timeout SECONDS  give up reaching the server, or waiting for an answer, after this long
                     (default 15)
  -h, --help         show help`;

/** `pairwise --help`: every command with its synopsis and summary. */
export function generalHelp(commands: readonly Command[]): string {
  const lines = commands.map((c) => `  ${c.synopsis}\n      ${c.summary}`);
  return `usage: pairwise [--home DIR] [--json] [--timeout SECONDS] <command> [options]

pairwise is the Pairwise reference client: an end-to-end encrypted, multi-device messenger.

Commands:
${lines.join("\n")}

${GLOBAL_HELP}

Exit status: 0 success, 1 failure (one line on stderr), 2 usage error, 130 interrupted.
Run 'pairwise <command> --help' for a command's details.
`;
}

/** `pairwise <command> --help`. */
export function commandHelp(command: Command): string {
  return `usage: pairwise ${command.synopsis}

${command.summary}

${command.help}

${GLOBAL_HELP}
`;
}
