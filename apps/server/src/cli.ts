#!/usr/bin/env node
// pairwise-server [--data DIR] [--host H] [--port N] [--config FILE]
import { parseArgs } from "node:util";
import pino from "pino";
import {
  configFromEnv,
  readConfigFile,
  resolveConfig,
  type ServerConfigInput,
} from "./internal/config.ts";
import { ServerError } from "./internal/errors.ts";
import { startServer } from "./internal/server.ts";

const USAGE = `usage: pairwise-server [--data DIR] [--host HOST] [--port PORT] [--config FILE]
                       [--store sqlite|postgres://...] [--bus nats://...] [--blobs disk|s3://...]

Runs the Pairwise relay on the embedded default (SQLite and blobs in DIR), or as one node of a
cluster: --store postgres://... (shared by every node) and --bus nats://... (wake-ups between
nodes). DIR still holds the server key (the same on every node) and, unless --blobs
s3://bucket[/prefix] puts them on S3 (AWS credentials from the environment), the blobs.
Environment: PAIRWISE_SERVER_DATA, PAIRWISE_SERVER_HOST, PAIRWISE_SERVER_PORT,
PAIRWISE_SERVER_REGISTRATION (open|invite), PAIRWISE_SERVER_MAX_COMPANIONS, PAIRWISE_SERVER_LOG_LEVEL,
PAIRWISE_SERVER_STORE, PAIRWISE_SERVER_BUS, PAIRWISE_SERVER_BLOBS, PAIRWISE_SERVER_S3_ENDPOINT,
PAIRWISE_SERVER_S3_REGION.
`;

function fail(message: string, code: number): never {
  process.stderr.write(`pairwise-server: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      options: {
        data: { type: "string" },
        host: { type: "string" },
        port: { type: "string" },
        config: { type: "string" },
        store: { type: "string" },
        bus: { type: "string" },
        blobs: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`, 2);
  }
  if (args.values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const flags: ServerConfigInput = {};
  if (args.values.data !== undefined) flags.dataDir = args.values.data;
  if (args.values.host !== undefined) flags.host = args.values.host;
  if (args.values.store !== undefined) flags.store = args.values.store;
  if (args.values.bus !== undefined) flags.bus = args.values.bus;
  if (args.values.blobs !== undefined) flags.blobs = args.values.blobs;
  if (args.values.port !== undefined) {
    if (!/^\d+$/.test(args.values.port)) fail(`--port must be a number\n${USAGE}`, 2);
    flags.port = Number(args.values.port);
  }
  let config;
  try {
    const file = args.values.config === undefined ? {} : readConfigFile(args.values.config);
    config = resolveConfig(file, configFromEnv(process.env), flags);
  } catch (err) {
    fail(ServerError.is(err) ? err.message.replace(/^InvalidRequest: /, "") : String(err), 2);
  }
  const logger = pino(
    { level: config.logLevel, base: { service: "pairwise-server" } },
    pino.destination(2),
  );
  const server = await startServer({ config, logger }).catch((err: unknown) =>
    fail(ServerError.is(err) || err instanceof Error ? err.message : String(err), 1),
  );
  process.stdout.write(`listening on ${server.url}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

await main();
