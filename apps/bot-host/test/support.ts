// Shared set-up of the bot host's tests: a real relay on a loopback port (SQLite in a temp dir),
// real devices with their own homes, and hosts started in-process or as a child process.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { PairwiseDevice, approveLink, type StoredMessage } from "@pairwise/client";
import { resolveConfig, startServer, type RunningServer } from "@pairwise/server";
import type { BackupRecord, RestoreSink } from "@pairwise/backup";
import pino from "pino";
import { chromium, type Browser } from "playwright-core";
import { parseConfig, startBotHost, type Plugin, type RunningBotHost } from "../src/index.ts";

export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const repoRoot = resolve(packageRoot, "../..");
export const ADMIN_TOKEN = "test-admin-token-0123456789";

/** A fresh temp directory. */
export const tempDir = (name: string) => mkdtempSync(join(tmpdir(), `pairwise-bot-${name}-`));

/** Polls `ok` until it holds, failing after `ms` (bounded waits, not timing assertions). */
export async function until(
  ok: () => boolean | Promise<boolean>,
  ms = 30_000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts a relay on 127.0.0.1, port chosen by the OS. */
export function startRelay(): Promise<RunningServer> {
  return startServer({
    config: resolveConfig({
      dataDir: tempDir("server"),
      host: "127.0.0.1",
      port: 0,
      logLevel: "silent",
    }),
    logger: pino({ level: "silent" }),
  });
}

/** A new account whose primary is a new device. */
export async function account(server: RunningServer, name: string): Promise<PairwiseDevice> {
  const d = PairwiseDevice.open({ home: tempDir(name), timeoutMs: 20_000 });
  await d.register({ server: { url: server.url }, accountId: name });
  return d;
}

/** A customer: an account that receives, collecting every message it gets. */
export async function customer(
  server: RunningServer,
  name: string,
): Promise<{ device: PairwiseDevice; inbox: StoredMessage[] }> {
  const device = await account(server, name);
  const inbox: StoredMessage[] = [];
  device.on("message", (m) => {
    if (!m.outgoing) inbox.push(m);
  });
  await device.startReceiving();
  return { device, inbox };
}

/** Config of one bot against `server` in a fresh state dir. */
export function botConfig(
  server: RunningServer,
  bots: Array<{
    name: string;
    plugins?: unknown[];
    concurrency?: number;
    stateDir?: string;
    backup?: { to: string; intervalMinutes: number };
  }>,
  port = 0,
) {
  return parseConfig(
    {
      http: { host: "127.0.0.1", port },
      adminToken: ADMIN_TOKEN,
      logLevel: "silent",
      bots: bots.map((b) => ({
        name: b.name,
        server: server.url,
        stateDir: b.stateDir ?? tempDir(`state-${b.name}`),
        plugins: b.plugins ?? [],
        ...(b.concurrency ? { concurrency: b.concurrency } : {}),
        ...(b.backup ? { backup: b.backup } : {}),
      })),
    },
    packageRoot,
  );
}

/** Starts a host in this process. */
export function startHost(
  server: RunningServer,
  bots: Array<{ name: string; plugins?: unknown[]; concurrency?: number; stateDir?: string }>,
  extraPlugins?: Record<string, Plugin[]>,
  now?: () => number,
): Promise<RunningBotHost> {
  return startBotHost({
    config: botConfig(server, bots),
    logger: pino({ level: "silent" }),
    ...(extraPlugins ? { extraPlugins } : {}),
    ...(now ? { now } : {}),
  });
}

/** Approves the bot's link code from `primary` and waits until the bot is connected. */
export async function linkBot(
  host: RunningBotHost,
  name: string,
  primary: PairwiseDevice,
): Promise<void> {
  const bot = host.bot(name);
  await until(() => bot.snapshot().linkCode !== undefined, 30_000, "a link code");
  const code = bot.snapshot().linkCode ?? "";
  await approveLink(primary, code, () => Promise.resolve(true), { historySync: false });
  await until(() => bot.currentState === "connected", 30_000, "the bot to connect");
}

/** A host as a child process (`src/cli.ts` through tsx) with a config file. */
export interface HostProcess {
  child: ChildProcess;
  url: Promise<string>;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Writes `config` as JSON and starts `pairwise-bot-host --config` on it. */
export function spawnHost(config: unknown, dir: string): HostProcess {
  const file = join(dir, "pairwise-bot-host.config.json");
  writeFileSync(file, JSON.stringify(config));
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(packageRoot, "src/cli.ts"), "--config", file],
    {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  const guard = setTimeout(() => child.kill("SIGKILL"), 240_000);
  guard.unref();
  const exited = new Promise<number | null>((r) =>
    child.on("close", (code) => {
      clearTimeout(guard);
      r(code);
    }),
  );
  const url = new Promise<string>((resolveUrl, reject) => {
    const check = () => {
      const m = /^dashboard (http:\/\/\S+)\/\n/m.exec(stdout);
      if (m?.[1]) resolveUrl(m[1]);
    };
    child.stdout.on("data", check);
    void exited.then(() => reject(new Error(`host exited before starting: ${stderr}`)));
  });
  url.catch(() => undefined);
  return { child, url, stderr: () => stderr, exited };
}

/** GETs a JSON API of a host with the admin token. */
export async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  if (!res.ok) throw new Error(`GET ${url}: ${String(res.status)}`);
  return res.json();
}

/** Headless Debian Chromium (CHROMIUM_PATH overrides /usr/bin/chromium) as the tests drive it. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** A restore sink that keeps what it is given (and whether it was committed). */
export function collectSink(): RestoreSink & { records: BackupRecord[]; committed: boolean } {
  const sink = {
    records: [] as BackupRecord[],
    committed: false,
    put: (r: BackupRecord) => void sink.records.push(r),
    commit: () => void (sink.committed = true),
    abort: () => void (sink.records = []),
  };
  return sink;
}

/** Records as one sorted text (table, key, value in hex): equal text, byte-identical records. */
export const canonicalRecords = (records: Iterable<BackupRecord>) =>
  [...records]
    .map((r) => `${r.table}|${r.key}=${Buffer.from(r.value).toString("hex")}`)
    .sort()
    .join("\n");
