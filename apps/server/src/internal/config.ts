import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { ServerError } from "./errors.ts";

const DAY = 24 * 60 * 60 * 1000;

/** The server's settings, after flags, environment and file are merged and validated. */
export const serverConfigSchema = z
  .object({
    dataDir: z.string().min(1).default(".pairwise-data/server"),
    /** "sqlite" (the embedded default, in dataDir) or a `postgres://` URL shared by every node. */
    store: z
      .string()
      .regex(/^(sqlite|postgres(ql)?:\/\/.+)$/, "must be sqlite or a postgres:// URL")
      .default("sqlite"),
    /** PostgreSQL schema of the tables. */
    pgSchema: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/)
      .default("pairwise"),
    /** NATS URL(s) (`nats://host:port`, comma-separated) linking the nodes of a cluster. */
    bus: z
      .string()
      .regex(/^nats:\/\/[^\s]+$/, "must be a nats:// URL")
      .optional(),
    /** "disk" (dataDir/blobs) or `s3://bucket[/prefix]` (credentials from the AWS environment). */
    blobs: z
      .string()
      .regex(
        /^(disk|s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?)$/,
        "must be disk or s3://bucket[/prefix]",
      )
      .default("disk"),
    /** An S3-compatible endpoint (MinIO …) instead of AWS; region for S3. */
    s3Endpoint: z.string().url().optional(),
    s3Region: z.string().min(1).default("us-east-1"),
    /** With a bus: delivery re-reads a device's queue at least this often (a lost wake-up). */
    clusterPollMs: z.number().int().min(100).default(5000),
    host: z.string().min(1).default("127.0.0.1"),
    port: z.number().int().min(0).max(65535).default(8787),
    /** Open registration (default) or invite tokens only. */
    registration: z.enum(["open", "invite"]).default("open"),
    maxCompanions: z.number().int().min(0).max(126).default(4),
    /** Companions are logged out when the primary has not been online this long. */
    companionExpiryMs: z
      .number()
      .int()
      .positive()
      .default(14 * DAY),
    queueTtlMs: z
      .number()
      .int()
      .positive()
      .default(30 * DAY),
    maxBlobBytes: z
      .number()
      .int()
      .positive()
      .default(100 * 1024 * 1024),
    maxFrameBytes: z
      .number()
      .int()
      .min(1024)
      .default(2 * 1024 * 1024),
    maxConnections: z.number().int().positive().default(10_000),
    /** Prekey bundles one device may fetch per minute. */
    bundleFetchesPerMinute: z.number().int().positive().default(600),
    logLevel: z
      .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
      .default("info"),
    /**
     * This server's provider name for federation (users elsewhere address its users as
     * `name@provider`). Without it the server does not federate.
     */
    provider: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{0,62}$/, "must be a lowercase provider name")
      .optional(),
    /** Where the federation listener (server-to-server links) listens. */
    federationHost: z.string().min(1).default("127.0.0.1"),
    federationPort: z.number().int().min(0).max(65535).default(8788),
    /** Allow-listed partner providers: name, federation URL, provider key (base64url). */
    partners: z
      .array(
        z
          .object({
            name: z.string().regex(/^[a-z0-9][a-z0-9.-]{0,62}$/),
            url: z.string().regex(/^wss?:\/\/.+/, "must be a ws:// or wss:// URL"),
            publicKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/, "must be a 32-byte base64url key"),
          })
          .strict(),
      )
      .default([]),
    /** End-to-end protocols besides Signal/PQXDH the operator approves, as "name/version". */
    approvedProtocols: z.array(z.string().regex(/^[a-z0-9.-]+\/[0-9]+$/)).default([]),
  })
  .strict();

/** Validated server settings. */
export type ServerConfig = z.infer<typeof serverConfigSchema>;

/** Partial settings as flags, environment or a config file give them. */
export type ServerConfigInput = z.input<typeof serverConfigSchema>;

function describe(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".") || "config"}: ${i.message}`).join("; ");
}

/**
 * Merges settings (later sources win: file, then environment, then flags) and validates them.
 * Throws `ServerError("InvalidRequest")` naming each bad setting.
 */
export function resolveConfig(...sources: ServerConfigInput[]): ServerConfig {
  const merged: Record<string, unknown> = {};
  for (const s of sources)
    for (const [k, v] of Object.entries(s)) if (v !== undefined) merged[k] = v;
  const result = serverConfigSchema.safeParse(merged);
  if (!result.success)
    throw new ServerError("InvalidRequest", `invalid configuration: ${describe(result.error)}`);
  return result.data;
}

/** Reads a JSON or YAML config file. Throws `ServerError("InvalidRequest")` when unreadable. */
export function readConfigFile(path: string): ServerConfigInput {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new ServerError("InvalidRequest", `cannot read config file ${path}`);
  }
  let raw: unknown;
  try {
    raw = path.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch {
    throw new ServerError(
      "InvalidRequest",
      `config file ${path} is not valid ${path.endsWith(".json") ? "JSON" : "YAML"}`,
    );
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ServerError("InvalidRequest", `config file ${path} must hold an object`);
  }
  return raw;
}

const ENV: Record<string, keyof ServerConfigInput> = {
  PAIRWISE_SERVER_DATA: "dataDir",
  PAIRWISE_SERVER_HOST: "host",
  PAIRWISE_SERVER_PORT: "port",
  PAIRWISE_SERVER_REGISTRATION: "registration",
  PAIRWISE_SERVER_MAX_COMPANIONS: "maxCompanions",
  PAIRWISE_SERVER_LOG_LEVEL: "logLevel",
  PAIRWISE_SERVER_STORE: "store",
  PAIRWISE_SERVER_BUS: "bus",
  PAIRWISE_SERVER_PG_SCHEMA: "pgSchema",
  PAIRWISE_SERVER_BLOBS: "blobs",
  PAIRWISE_SERVER_S3_ENDPOINT: "s3Endpoint",
  PAIRWISE_SERVER_S3_REGION: "s3Region",
};
const NUMERIC = new Set<keyof ServerConfigInput>(["port", "maxCompanions"]);

/** Settings from `PAIRWISE_SERVER_*` environment variables. */
export function configFromEnv(env: NodeJS.ProcessEnv): ServerConfigInput {
  const out: Record<string, unknown> = {};
  for (const [name, key] of Object.entries(ENV)) {
    const v = env[name];
    if (v === undefined || v === "") continue;
    out[key] = NUMERIC.has(key) ? Number(v) : v;
  }
  return out;
}
