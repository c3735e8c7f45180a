// npm run bench -- relay-ab: the relay's peak (relay.ts's submit -> deliver -> acknowledge, the
// same load and window) for two server builds, run in turn, to tell whether a change to the
// server makes it faster. BENCH_AB_BASE names the other build: a copy of apps/server/dist from
// the commit to compare with, put under apps/server/ (so that it finds the same node_modules),
// e.g. `git stash; npm run build; cp -r apps/server/dist apps/server/dist-base; git stash pop`,
// then `BENCH_AB_BASE=apps/server/dist-base npm run bench -- relay-ab`.
//
// Why in turn, and why paired: this kind of machine changes speed by up to 2x within minutes
// (the load's CPU per message went from 9.3 to 21.2 µs between two runs of the same code), so
// two builds measured one after the other compare the machine's moments, not the builds. Here
// both servers run side by side, each with its own load, and their peaks alternate (the order
// flips every round); each round gives one ratio of this build's figure over the base's, and
// the result is the median of those, for the rate and for the server's CPU per message. Read
// it against what identical builds give: with 20 rounds here, rate ratios of 0.984 and 0.878
// and CPU ratios of 1.022 and 1.038. The CPU ratio is the steadier of the two: two versions of
// a change that moved the queue's commits to a worker thread read 1.158 and 1.196 (rates 0.840
// and 0.783, 20 and 16 rounds, measured the same way before this file was written), and the
// change was dropped.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { relayLoad, type RelayEndpoint } from "./relay-load.ts";
import { cpuMs, startRelayProcess } from "./processes.ts";
import { emitResult, line, percentile, round } from "./harness.ts";

const FRAME = 200;
const WINDOW = 512;
const MESSAGES = 30_000;
const WARMUP_MESSAGES = 6_000;
const ROUNDS = Number(process.env.BENCH_AB_ROUNDS ?? 20);
if (!(Number.isInteger(ROUNDS) && ROUNDS >= 2 && ROUNDS <= 200)) {
  throw new Error("BENCH_AB_ROUNDS must be a whole number from 2 to 200");
}
const base = process.env.BENCH_AB_BASE;
if (!base) {
  throw new Error("BENCH_AB_BASE must name the other server build's dist directory");
}

/** A relay of one build in its own process, with its own load (Alice and Bob), warmed up. */
async function side(dist: string) {
  const dataDir = mkdtempSync(join(tmpdir(), "pairwise-bench-ab-"));
  const { child, url, publicKey } = await startRelayProcess(dataDir, {
    dist,
    env: { PAIRWISE_SERVER_LOG_LEVEL: "warn" },
  });
  const server = { url, publicKey } as RelayEndpoint;
  const load = await relayLoad(server, server, { frameBytes: FRAME, window: WINDOW });
  await load.peak(WARMUP_MESSAGES);
  const rates: number[] = [];
  const serverUs: number[] = [];
  return {
    rates,
    serverUs,
    async run() {
      const before = cpuMs(child.pid!);
      rates.push(await load.peak(MESSAGES));
      serverUs.push(((cpuMs(child.pid!) - before) * 1000) / MESSAGES);
    },
    async close() {
      await load.close();
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const before = await side(base);
const after = await side("apps/server/dist");
for (let i = 0; i < ROUNDS; i++) {
  for (const s of i % 2 ? [after, before] : [before, after]) await s.run();
}
await before.close();
await after.close();

const paired = (a: number[], b: number[]) =>
  percentile(
    b.map((v, i) => v / a[i]!),
    50,
  );
const rateRatio = paired(before.rates, after.rates);
const cpuRatio = paired(before.serverUs, after.serverUs);
const basePerS = Math.round(percentile(before.rates, 50));
const thisPerS = Math.round(percentile(after.rates, 50));
line("base build (BENCH_AB_BASE), median", basePerS, "messages/s");
line("this build (apps/server/dist), median", thisPerS, "messages/s");
line(`this / base, median of ${String(ROUNDS)} rounds`, rateRatio);
line("server CPU per message, this / base", cpuRatio);
emitResult({
  bench: "relay-ab",
  base_per_s: basePerS,
  this_per_s: thisPerS,
  ratio: round(rateRatio),
  server_cpu_ratio: round(cpuRatio),
});
