#!/usr/bin/env node
// pairwise-bot-host [--config FILE]: runs the bots of a config file until SIGINT/SIGTERM.
import { parseArgs } from "node:util";
import { BotHostError } from "./internal/errors.ts";
import { loadConfigFile } from "./internal/config.ts";
import { startBotHost } from "./internal/host.ts";

const USAGE = `usage: pairwise-bot-host [--config FILE]

Runs the bots named in the config file (default: pairwise-bot-host.config.{json,yaml,yml} in the
current directory), each a companion device linked by its account's owner, and serves the
dashboard. Prints "dashboard URL" on stdout once started; logs (pino JSON) go to stderr.
SIGINT/SIGTERM drain in-flight messages and stop.`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: { config: { type: "string", short: "c" }, help: { type: "boolean", short: "h" } },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const host = await startBotHost({ config: loadConfigFile(values.config) });
  process.stdout.write(`dashboard ${host.url}/\n`);
  await new Promise<void>((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => resolve());
  });
  await host.stop();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const message = BotHostError.is(err) ? `${err.code}: ${err.message}` : "unexpected failure";
    process.stderr.write(`pairwise-bot-host: ${message}\n`);
    if (!BotHostError.is(err) && err instanceof Error) process.stderr.write(`${err.name}\n`);
    process.exit(1);
  },
);
