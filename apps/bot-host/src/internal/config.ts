import { existsSync, readFileSync } from "node:fs";
import { dirname, extname, isAbsolute, join, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { BackupError } from "@pairwise/backup";
import { parseBackupDestination, type BackupDestination } from "@pairwise/backup/destinations";
import { z } from "zod";
import { BotHostError } from "./errors.ts";

const BACKUP_KINDS = ["fs", "s3"] as const;

/** Where and how often a bot is backed up (end-to-end encrypted; see @pairwise/backup). */
const backupSchema = z
  .object({
    /** `fs:DIR` (relative to the config file) or `s3://BUCKET/PREFIX`. */
    to: z.string().superRefine((value, ctx) => {
      try {
        parseBackupDestination(value, { kinds: BACKUP_KINDS });
      } catch (err) {
        if (!BackupError.is(err, "InvalidArgument")) throw err;
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          message: "expected fs:DIR or s3://BUCKET/PREFIX",
        });
      }
    }),
    /** Minutes between backups (1 to 10080, a week). */
    intervalMinutes: z.number().int("a whole number of minutes").min(1).max(10_080),
  })
  .strict();

const pluginEntry = z.union([
  z.string().min(1),
  z.tuple([z.string().min(1)]),
  z.tuple([z.string().min(1), z.unknown()]),
]);

const botSchema = z
  .object({
    name: z
      .string()
      .regex(
        /^[a-z0-9][a-z0-9-]{0,62}$/,
        "1-63 of a-z, 0-9 and '-', starting with a letter or digit",
      ),
    server: z.string().regex(/^wss?:\/\/[^\s]+$/, "a ws:// or wss:// URL"),
    stateDir: z.string().min(1),
    deviceName: z.string().min(1).max(64).optional(),
    concurrency: z.number().int().min(1).max(256).optional(),
    /** Send delivery receipts for incoming messages (default true). */
    deliveryReceipts: z.boolean().default(true),
    plugins: z.array(pluginEntry).max(64).default([]),
    backup: backupSchema.optional(),
  })
  .strict();

/** The config file's schema (`pairwise-bot-host.config.{json,yaml}`). */
export const botHostConfigSchema = z
  .object({
    http: z
      .object({
        host: z.string().min(1).default("127.0.0.1"),
        port: z.number().int().min(0).max(65535).default(8790),
        /**
         * The origin people open the dashboard at (`https://bots.example.com`); passkeys are
         * bound to its host name. Default `http://localhost:PORT`.
         */
        publicOrigin: z
          .string()
          .regex(/^https?:\/\/[a-z0-9.-]+(?::\d{1,5})?$/, "an origin like https://bots.example.com")
          .optional(),
      })
      .strict()
      .default({}),
    /** The dashboard's admin token (at least 16 characters). */
    adminToken: z.string().min(16, "at least 16 characters"),
    /** Chats handled at once per bot (default 8). */
    concurrency: z.number().int().min(1).max(256).default(8),
    logLevel: z
      .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
      .default("info"),
    bots: z
      .array(botSchema)
      .min(1)
      .max(10_000)
      .refine(
        (bots) => new Set(bots.map((b) => b.name)).size === bots.length,
        "bot names must be unique",
      )
      .refine(
        (bots) => new Set(bots.map((b) => resolve(b.stateDir))).size === bots.length,
        "each bot needs its own stateDir",
      )
      .refine((bots) => {
        const targets = bots.flatMap((b) =>
          b.backup
            ? [
                b.backup.to.startsWith("fs:")
                  ? `fs:${resolve(b.backup.to.slice(3))}`
                  : b.backup.to.replace(/\/*$/, "/"),
              ]
            : [],
        );
        return new Set(targets).size === targets.length;
      }, "each bot needs its own backup destination"),
  })
  .strict();

/** A plugin as named in config: a specifier and its options. */
export interface PluginSpec {
  specifier: string;
  options: unknown;
}

/** A bot's config, with paths resolved. */
export interface BotConfig {
  name: string;
  server: string;
  stateDir: string;
  deviceName: string;
  concurrency: number;
  deliveryReceipts: boolean;
  plugins: PluginSpec[];
  /** Scheduled backups, when configured. */
  backup?: BotBackupConfig;
}

/** A bot's backup settings, with an `fs:` directory resolved. */
export interface BotBackupConfig {
  /** The destination as written in the config file (for display; it holds no secret). */
  to: string;
  destination: BackupDestination;
  intervalMinutes: number;
}

/** The host's config, validated, with paths resolved against the config file's directory. */
export interface BotHostConfig {
  http: { host: string; port: number; publicOrigin?: string };
  adminToken: string;
  logLevel: string;
  /** Where relative plugin paths are resolved from. */
  baseDir: string;
  bots: BotConfig[];
}

/** The file names looked for when no config path is given. */
export const CONFIG_FILE_NAMES = [
  "pairwise-bot-host.config.json",
  "pairwise-bot-host.config.yaml",
  "pairwise-bot-host.config.yml",
];

/**
 * Validates a config object (as parsed from JSON or YAML). Relative paths are resolved against
 * `baseDir`. Throws `BotHostError("InvalidConfig")` naming each bad field (never its value).
 */
export function parseConfig(raw: unknown, baseDir: string, source = "config"): BotHostConfig {
  const parsed = botHostConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((i) => `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`)
      .join("; ");
    throw new BotHostError("InvalidConfig", `${source}: ${issues}`);
  }
  const c = parsed.data;
  return {
    http: {
      host: c.http.host,
      port: c.http.port,
      ...(c.http.publicOrigin ? { publicOrigin: c.http.publicOrigin } : {}),
    },
    adminToken: c.adminToken,
    logLevel: c.logLevel,
    baseDir,
    bots: c.bots.map((b) => ({
      name: b.name,
      server: b.server,
      stateDir: isAbsolute(b.stateDir) ? b.stateDir : resolve(baseDir, b.stateDir),
      deviceName: b.deviceName ?? `bot ${b.name}`,
      concurrency: b.concurrency ?? c.concurrency,
      deliveryReceipts: b.deliveryReceipts,
      plugins: b.plugins.map((p) =>
        typeof p === "string"
          ? { specifier: p, options: undefined }
          : { specifier: p[0], options: p[1] },
      ),
      ...(b.backup
        ? {
            backup: {
              to: b.backup.to,
              destination: parseBackupDestination(b.backup.to, { baseDir, kinds: BACKUP_KINDS }),
              intervalMinutes: b.backup.intervalMinutes,
            },
          }
        : {}),
    })),
  };
}

/**
 * Reads and validates a config file (`.json`, `.yaml` or `.yml`); with no path, the first of
 * {@link CONFIG_FILE_NAMES} in `cwd`. Throws `BotHostError("InvalidConfig")`.
 */
export function loadConfigFile(path?: string, cwd = process.cwd()): BotHostConfig {
  const file = path
    ? resolve(cwd, path)
    : CONFIG_FILE_NAMES.map((n) => join(cwd, n)).find((f) => existsSync(f));
  if (!file)
    throw new BotHostError(
      "InvalidConfig",
      `no config file: pass --config or create ${CONFIG_FILE_NAMES[0] ?? ""} in ${cwd}`,
    );
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (cause) {
    throw new BotHostError("InvalidConfig", `cannot read the config file ${file}`, { cause });
  }
  let raw: unknown;
  try {
    raw = extname(file) === ".json" ? JSON.parse(text) : parseYaml(text);
  } catch (cause) {
    throw new BotHostError(
      "InvalidConfig",
      `${file} is not valid ${extname(file) === ".json" ? "JSON" : "YAML"}`,
      {
        cause,
      },
    );
  }
  return parseConfig(raw, dirname(file), file);
}
