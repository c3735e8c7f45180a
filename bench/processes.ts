// Child processes the benchmarks start: the relay server (its own process, as in production)
// and helpers, each waited for by its ready line.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const root = join(import.meta.dirname, "..");
/** The file URL of stall-watch.mjs (BENCH_STALL_WATCH), for `--import` and `import()`. */
export const STALL_WATCH = pathToFileURL(join(import.meta.dirname, "stall-watch.mjs")).href;

/**
 * Node flags the servers run with, as apps/server's README says to deploy the relay ("Running
 * it"): 32 MB semi-spaces. Given to the floors' servers too, so that a floor and the server it
 * is compared with run on the same runtime settings (a floor's server, run through tsx, also
 * gets `--no-memory-reducer`, for tsx's loader thread, which a server run from dist does not
 * have: see startProcess).
 */
export const SERVER_NODE_ARGS = ["--max-semi-space-size=32"];

/**
 * Runs an entry (a .ts one through tsx) from the repo root and waits for a stdout line matching
 * `ready` for `readyTimeoutMs` (default 30 s). `waitLine` waits (bounded) for a later line;
 * `stdin: true` leaves the child's stdin open for commands (it sees its end when this process
 * closes it or exits).
 */
export async function startProcess(
  args: string[],
  ready: RegExp,
  env: NodeJS.ProcessEnv = process.env,
  nodeArgs: string[] = [],
  options: { stdin?: boolean; readyTimeoutMs?: number } = {},
): Promise<{
  child: ChildProcess;
  match: RegExpMatchArray;
  waitLine: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
}> {
  const prof = process.env.BENCH_CPU_PROF
    ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_CPU_PROF]
    : [];
  // TypeScript entries run through tsx; built ones (dist) as they run in production. tsx's
  // loader runs on a thread of its own, with its own V8 heap, idle once the modules are loaded;
  // V8's memory reducer collects that heap about 24 s after the process starts (two full
  // collections, 11-27 ms each, marking on the process's helper threads too), which in the relay
  // bench is when the latency phase runs. Off for these processes, the bench's helpers (the idle
  // devices, the floors' servers): a server under test runs from dist and has no such thread.
  const tsx = args[0]?.endsWith(".ts") ? ["--no-memory-reducer", "--import", "tsx"] : [];
  // BENCH_NODE_ARGS (e.g. "--trace-gc"): extra Node flags for the children, whose stdout is
  // then copied to stderr, each line prefixed with the child's pid.
  const extra = process.env.BENCH_NODE_ARGS?.split(" ").filter(Boolean) ?? [];
  // BENCH_STALL_WATCH: the children report their pauses too (stall-watch.mjs, to stderr).
  const watch = process.env.BENCH_STALL_WATCH ? ["--import", STALL_WATCH] : [];
  const child = spawn(
    process.execPath,
    [...nodeArgs, ...prof, ...watch, ...extra, ...tsx, ...args],
    {
      cwd: root,
      env,
      stdio: [options.stdin ? "pipe" : "ignore", "pipe", "inherit"],
    },
  );
  const lines = createInterface({ input: child.stdout! });
  lines.on("line", (l) => {
    if (extra.length > 0) process.stderr.write(`[${String(child.pid)}] ${l}\n`);
  });
  const waitLine = (pattern: RegExp, timeoutMs = 30_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        lines.off("line", onLine);
        child.off("exit", onExit);
      };
      const onLine = (l: string) => {
        const m = pattern.exec(l);
        if (!m) return;
        done();
        resolve(m);
      };
      const onExit = () => {
        done();
        reject(new Error(`${args[0]} exited`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${args[0]}: no line matching ${String(pattern)} in ${timeoutMs} ms`));
      }, timeoutMs);
      lines.on("line", onLine);
      child.once("exit", onExit);
    });
  const match = await waitLine(ready, options.readyTimeoutMs);
  return { child, match, waitLine };
}

/**
 * Starts `pairwise-server` (the built one, with the Node flags production uses) on a loopback
 * port in `dataDir`; returns its URL, pinned key and process. `dist` is the build to run
 * (apps/server/dist unless given: relay-ab runs two).
 */
export async function startRelayProcess(
  dataDir: string,
  options: { args?: string[]; env?: NodeJS.ProcessEnv; dist?: string } = {},
): Promise<{ child: ChildProcess; url: string; publicKey: Uint8Array }> {
  const { child, match } = await startProcess(
    [
      join(options.dist ?? "apps/server/dist", "cli.js"),
      "--data",
      dataDir,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      ...(options.args ?? []),
    ],
    /^listening on (ws:\/\/[^\s]+)$/,
    { ...process.env, ...options.env },
    SERVER_NODE_ARGS,
  );
  const url = match[1]!;
  const keyText = await (await fetch(url.replace("ws://", "http://") + "/server-key")).text();
  return { child, url, publicKey: new Uint8Array(Buffer.from(keyText, "base64url")) };
}

/** Resident set size of a process in KiB (Linux). */
export function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0);
}

/** CPU time a process has used so far (user + system, all its threads), in ms (Linux). */
export function cpuMs(pid: number): number {
  // Fields after the command name (which may hold spaces and parentheses, hence the last ")"):
  // utime and stime are the 12th and 13th.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // In clock ticks of USER_HZ, 100 a second on Linux.
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/**
 * CPU time the whole machine has spent busy so far (every process and the kernel: user, nice,
 * system, irq, softirq; not a hypervisor's steal, which is other guests' work), in ms (Linux; in
 * a container, /proc/stat counts the host).
 */
export function machineBusyMs(): number {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/);
  // cpu user nice system idle iowait irq softirq steal ...
  const f = cpu.slice(1).map(Number);
  return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]!) * 10;
}
