// `npm start`: runs the whole system on the embedded default, everything under .pairwise-data/:
// the relay server on SQLite, the bot host with a demo bot (help + auto-reply + echo), and a demo
// business account whose primary links the bot. Prints the dashboard URL and the `pairwise`
// commands to chat with the bot from a new account. Ctrl-C stops everything gracefully.
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const root = fileURLToPath(new URL("..", import.meta.url));
const data = join(root, ".pairwise-data");
const run = promisify(execFile);
const BUSINESS = "demo-business";
const HOST_PORT = Number(process.env.PAIRWISE_BOT_HOST_PORT ?? 8790);
const children = [];
let stopping = false;

function fail(message) {
  process.stderr.write(`npm start: ${message}\n`);
  stop(1);
}

function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  // The bot host first (it drains in-flight messages), then the relay.
  const [server, host] = children;
  const end = (child) =>
    new Promise((r) => {
      if (!child || child.exitCode !== null || child.signalCode !== null) return r();
      child.once("exit", r);
      child.kill("SIGTERM");
    });
  void end(host)
    .then(() => end(server))
    .then(() => process.exit(code));
}
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => stop(0));

/** Starts a node program; resolves with the first stdout line matching `ready` (others pass through). */
function start(args, ready, name) {
  const child = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  child.on("exit", (code, signal) => {
    if (!stopping) fail(`${name} exited (${signal ?? code})`);
  });
  return new Promise((resolve) => {
    let matched = false;
    createInterface({ input: child.stdout }).on("line", (l) => {
      const m = matched ? null : ready.exec(l);
      if (m) {
        matched = true;
        resolve(m[1]);
      } else if (!/^\{"level":/.test(l)) process.stdout.write(`${l}\n`);
    });
  });
}

const pairwise = (home, ...args) =>
  run(process.execPath, [join(root, "apps/cli/dist/cli.js"), "--home", home, ...args]);

mkdirSync(data, { recursive: true, mode: 0o700 });

// 1. The relay, with the Node flags apps/server's README says to deploy it with.
const serverUrl = await start(
  [
    "--max-semi-space-size=32",
    "apps/server/dist/cli.js",
    "--data",
    join(data, "server"),
    ...process.argv.slice(2),
  ],
  /^listening on (ws:\/\/\S+)$/,
  "pairwise-server",
);

// 2. The demo business account (its primary lives in .pairwise-data/owner).
const ownerHome = join(data, "owner");
if (!existsSync(join(ownerHome, "device.db"))) {
  try {
    await pairwise(ownerHome, "register", "--server", serverUrl, "--name", BUSINESS);
  } catch (err) {
    fail(`cannot register the demo account: ${err.stderr ?? err.message}`);
  }
}

// 3. The bot host with its demo bot.
const tokenFile = join(data, "admin-token");
if (!existsSync(tokenFile))
  writeFileSync(tokenFile, randomBytes(24).toString("base64url"), { mode: 0o600 });
const token = readFileSync(tokenFile, "utf8").trim();
const configFile = join(data, "pairwise-bot-host.config.json");
writeFileSync(
  configFile,
  JSON.stringify(
    {
      http: { host: "127.0.0.1", port: HOST_PORT },
      adminToken: token,
      logLevel: "warn",
      bots: [
        {
          name: "demo",
          server: serverUrl,
          stateDir: "bots/demo",
          deviceName: "demo bot",
          plugins: [
            "help",
            [
              "auto-reply",
              {
                rules: [
                  { keyword: "hours", answer: "We are open Monday to Friday, 9:00 to 17:00." },
                  { pattern: "\\b(price|cost)s?\\b", answer: "Everything is free in the demo." },
                ],
              },
            ],
            "echo",
          ],
        },
      ],
    },
    null,
    2,
  ),
  { mode: 0o600 },
);
const dashboard = await start(
  ["apps/bot-host/dist/cli.js", "--config", configFile],
  /^dashboard (http:\/\/\S+)$/,
  "pairwise-bot-host",
);

// 4. The owner links the bot from the primary, exactly as they would link a laptop.
const api = async () =>
  (await fetch(`${dashboard}api/bots`, { headers: { authorization: `Bearer ${token}` } })).json();
for (let i = 0; ; i++) {
  if (i > 600) fail("the demo bot did not come up");
  const [bot] = await api();
  if (bot.state === "connected") break;
  if (bot.state === "unlinked" && bot.linkCode) {
    try {
      await pairwise(ownerHome, "link", bot.linkCode, "--yes");
    } catch (err) {
      fail(`cannot link the demo bot: ${err.stderr ?? err.message}`);
    }
  }
  await new Promise((r) => setTimeout(r, 100));
}

const you = join(".pairwise-data", "you");
process.stdout.write(`
Pairwise is running:
  relay       ${serverUrl}
  dashboard   ${dashboard}?token=${token}
  demo bot    linked to account "${BUSINESS}" (help, auto-reply, echo)

Chat with the bot from a new account (in another terminal, in this directory):
  node apps/cli/dist/cli.js --home ${you} register --server ${serverUrl} --name you
  node apps/cli/dist/cli.js --home ${you} send ${BUSINESS} "what are your hours?"
  node apps/cli/dist/cli.js --home ${you} send ${BUSINESS} /help
  node apps/cli/dist/cli.js --home ${you} receive --wait 3
or interactively:
  node apps/cli/dist/cli.js --home ${you} chat ${BUSINESS}

Ctrl-C stops everything; state stays in .pairwise-data/.
`);
