/**
 * What every benchmark uses: timing helpers and the reporting convention. A benchmark prints
 * human-readable lines as it goes and, last, exactly one JSON line with its figures (via
 * {@link emitResult}), so scripts can `tail -n 1`. Targets are ratios against a floor measured in
 * the same run, never absolute times.
 */

import { availableParallelism } from "node:os";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/**
 * A full garbage collection now, before a timed phase, so one side's garbage is not collected on
 * the other side's time (a floor run right after a phase that grew the heap would pay for it).
 */
export const collectGarbage: () => void = (() => {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
})();

/** Nanosecond-resolution monotonic clock, in milliseconds. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Runs `fn` `iterations` times after `warmup` untimed runs; returns mean microseconds per call. */
export async function timePerOp(
  fn: () => unknown,
  options: { iterations: number; warmup?: number },
): Promise<number> {
  for (let i = 0; i < (options.warmup ?? Math.ceil(options.iterations / 10)); i++) await fn();
  const start = nowMs();
  for (let i = 0; i < options.iterations; i++) await fn();
  return ((nowMs() - start) * 1000) / options.iterations;
}

/** The machine's cores, as the CPU budgets below count them. */
export const CORES = availableParallelism();

/**
 * What a ratio target leaves one operation (a message, an echo) here, in CPU microseconds: every
 * core fully used by all the processes taking part, at `ratio` times the floor's rate.
 */
export function cpuBudgetUs(ratio: number, floorPerS: number): number {
  return (CORES * 1e6) / (ratio * floorPerS);
}

/** The p-th percentile (0..100) of `samples`, nearest-rank. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) throw new Error("percentile of no samples");
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** Rounds to `digits` significant decimals for printing. */
export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Prints one human-readable figure line: `  label: value unit`. */
export function line(label: string, value: number | string, unit = ""): void {
  console.log(
    `  ${label.padEnd(36)} ${typeof value === "number" ? round(value) : value}${unit ? ` ${unit}` : ""}`,
  );
}

/** Prints the benchmark's final JSON line; call it once, last. */
export function emitResult(
  result: { bench: string } & Record<string, number | string | boolean>,
): void {
  console.log(JSON.stringify(result));
}

/**
 * With `BENCH_MARKS` set, prints `mark <label> <µs>` on the monotonic clock CPU profiles use
 * (`--cpu-prof` `startTime`), so a profile (`BENCH_CPU_PROF`) can be cut to one phase.
 */
export function mark(label: string): void {
  if (process.env.BENCH_MARKS) {
    console.error(`mark ${label} ${String(process.hrtime.bigint() / 1000n)}`);
  }
}
