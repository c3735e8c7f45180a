// BENCH_STALL_WATCH=1: run.ts's process and the children processes.ts starts (their main
// threads; not the children other benchmarks spawn themselves) print to stderr, on the monotonic
// clock the benchmarks time with (nowMs, in ms), each garbage collection pause of 3 ms or more
// and each event-loop stall of 15 ms or more:
//
//   stall-watch <pid> gc <minor|major|incremental|weak> at <ms> for <ms>
//   stall-watch <pid> lag at <ms> for <ms>
//
// to line a latency tail (BENCH_LAT_DUMP) up with the process that paused. A plain .mjs: the
// children load it with --import before tsx, run.ts imports it. The stall check is a 5 ms
// interval timer (a few µs of CPU a tick); a stall is how much later than due a tick came.
import { PerformanceObserver, constants, performance } from "node:perf_hooks";
import { isMainThread } from "node:worker_threads";

if (isMainThread) {
  // performance.now() counts from this process's start; nowMs() from the machine's boot.
  const offset = Number(process.hrtime.bigint()) / 1e6 - performance.now();
  const at = (t) => (t + offset).toFixed(1);
  const kinds = {
    [constants.NODE_PERFORMANCE_GC_MINOR]: "minor",
    [constants.NODE_PERFORMANCE_GC_MAJOR]: "major",
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
    [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weak",
  };
  const say = (text) => process.stderr.write(`stall-watch ${String(process.pid)} ${text}\n`);
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.duration < 3) continue;
      say(
        `gc ${kinds[e.detail?.kind] ?? "other"} at ${at(e.startTime)} for ${e.duration.toFixed(1)}`,
      );
    }
  }).observe({ entryTypes: ["gc"] });
  const tick = 5;
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    const stall = now - last - tick;
    if (stall >= 15) say(`lag at ${at(last + tick)} for ${stall.toFixed(1)}`);
    last = now;
  }, tick).unref();
}
