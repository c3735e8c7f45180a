// `npm run bench -- <name>` runs bench/<name>.ts after building the workspace. Each benchmark
// prints its figures and ends with one JSON line (see harness.ts).
//
// This process is the benchmarks' load (the devices' side; the floors' clients too) and runs
// with 32 MB semi-spaces (`--max-semi-space-size=32` in package.json's script; V8's default here
// is 16): the relay load keeps a window of requests in flight, and with the default young
// generation its scavenges averaged 4.4-6.4 ms, one every ~55 ms, at peak. And with
// `--no-allocation-site-pretenuring`. Without it, in 4 of 10 relay bench runs this process ran
// full collections in the paced latency phase (1 to 12 of them in 2 s, pauses of 4-15.6 ms),
// and those 4 runs had the 4 highest p99s (21.7-41 ms; the other 6: 10.1-18.1 ms). With it, 3
// of 40 runs had any (1 to 5, the longest 13.8 ms). The likely cause: V8 learns from the
// peak runs, whose window of 512 requests in flight outlives a scavenge, to allocate the request
// path's objects straight in the old generation. The peak figures did not suffer: over 12 runs
// each, taken in turn, the relay's median rate was 58.0k messages/s with the flag and 49.2k
// without, and this process's CPU per message at peak 12.3 and 13.5 µs. The flag is this
// process's, so it holds for every benchmark's load and floor clients; the others were not
// compared with and without it. And with `--no-memory-reducer`: tsx's loader thread has a V8
// heap of its own, which the memory reducer collects about 24 s after the process starts, in
// the relay bench's latency phase (see processes.ts, which runs the bench's helper processes
// with the same flag). The flags hold for every benchmark's process, including those that
// measure code in this process (core; the cluster bench's store beside pgbench); those were
// not compared with and without the memory reducer. The servers under test, and the floors'
// servers, run in their own processes with the flags the relay is deployed with (processes.ts).
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const available = readdirSync(import.meta.dirname)
  .filter(
    (f) => f.endsWith(".ts") && f !== "run.ts" && f !== "harness.ts" && !f.endsWith(".test.ts"),
  )
  .map((f) => f.slice(0, -3))
  .sort();
const name = process.argv[2];

if (!name || !available.includes(name)) {
  console.error(
    `usage: npm run bench -- <name>\navailable: ${available.length ? available.join(", ") : "(none yet)"}`,
  );
  process.exit(2);
}
console.log(`bench ${name}`);
// BENCH_STALL_WATCH=1: this process, and the children processes.ts starts, report their GC
// pauses and event-loop stalls (see stall-watch.mjs).
if (process.env.BENCH_STALL_WATCH) {
  await import((await import("./processes.ts")).STALL_WATCH);
}
await import(pathToFileURL(join(import.meta.dirname, `${name}.ts`)).href);
