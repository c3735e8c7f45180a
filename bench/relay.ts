// npm run bench -- relay
// Floor: a plain ws relay forwarding 200-byte frames between two sockets, timed in turn with the
// Pairwise relay (its own process, SQLite durable queue): submit -> deliver -> acknowledge, end
// to end. Then p50/p99 latency at half the peak rate; server memory per idle authenticated
// connection; and, as diagnostics, the server's and the load's CPU time per message at peak and
// at the paced rate (their cost, apart from the CPU they were given), the whole machine's at the
// paced rate, the load's full GCs while latencies were recorded, and each side's longest
// event-loop stall.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import {
  PerformanceObserver,
  constants as perfConstants,
  monitorEventLoopDelay,
  type PerformanceEntry,
} from "node:perf_hooks";
import WebSocket from "ws";
import { newMessageId } from "@pairwise/core";
import { relayLoad, type RelayEndpoint } from "./relay-load.ts";
import { CORES, cpuBudgetUs, emitResult, line, mark, nowMs, percentile, round } from "./harness.ts";
import {
  SERVER_NODE_ARGS,
  cpuMs,
  machineBusyMs,
  rssKb,
  startProcess,
  startRelayProcess,
} from "./processes.ts";

const FRAME = 200;
const GC_MAJOR = perfConstants.NODE_PERFORMANCE_GC_MAJOR;
const FLOOR_MESSAGES = 100_000;
/**
 * Timed runs of each side, taken in turn (floor, relay, floor, relay, ...) so that both sides
 * see the machine as it is at that moment: measured one side after the other, the floor's CPU
 * time per frame moved between 12.4 and 17.1 µs from one bench run to the next on this kind of
 * machine, and with it the ratio, whatever the relay did. Each side's rate is the median of its
 * runs (one short run of either swung by a third); the same statistic on both sides.
 */
const RUNS = 5;
const RELAY_MESSAGES = 30_000;
/** Untimed messages first, through both relays, so both are measured with their code optimised. */
const WARMUP_MESSAGES = 6_000;
const WINDOW = Number(process.env.BENCH_WINDOW ?? 512);
/**
 * Seconds of paced sending for the latency figures (a p99 over a fraction of a second only tells
 * whether one pause fell into it). BENCH_LATENCY_SECONDS sets another length, to study the tail:
 * over 6 s the p99 was higher here, not lower (a longer phase catches more of the pauses).
 */
const LATENCY_SECONDS = Number(process.env.BENCH_LATENCY_SECONDS ?? 2);
if (!(LATENCY_SECONDS > 0 && LATENCY_SECONDS <= 60)) {
  throw new Error("BENCH_LATENCY_SECONDS must be a number of seconds from 0 to 60");
}
/**
 * Seconds of the same paced sending before the recorded phase, unrecorded: the latency figures
 * are for a relay running at half its peak rate, not for its first moments after the peak runs.
 * Recorded from the first paced message, the tail was mostly the phase's first 200 ms (in 3 runs
 * here, 383 of 550, 217 of 555 and 288 of 410 of the messages at or over the p99), while the
 * server was still writing back and restarting the WAL the peak runs had filled.
 * BENCH_LATENCY_WARMUP_SECONDS sets another length (0: record from the first message).
 */
const LATENCY_WARMUP_SECONDS = Number(process.env.BENCH_LATENCY_WARMUP_SECONDS ?? 1);
if (!(LATENCY_WARMUP_SECONDS >= 0 && LATENCY_WARMUP_SECONDS <= 60)) {
  throw new Error("BENCH_LATENCY_WARMUP_SECONDS must be a number of seconds from 0 to 60");
}
/** Idle connections opened first (not counted), then the batch that is measured. */
const IDLE_WARMUP_CONNECTIONS = 200;
const IDLE_CONNECTIONS = 400;

const open = (url: string) =>
  new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });

/** The floor: a plain ws relay process and two sockets through it, ready for timed runs. */
async function startFloor() {
  const { child, match } = await startProcess(
    ["bench/relay-floor-server.ts"],
    /^listening on (\d+)$/,
    process.env,
    SERVER_NODE_ARGS,
  );
  const url = `ws://127.0.0.1:${match[1]}`;
  const a = await open(url);
  const b = await open(url);
  await new Promise((r) => setTimeout(r, 100));
  const frame = randomBytes(FRAME);
  /** Frames per second through the floor, and both sides' CPU time (its server and this process) meanwhile. */
  const run = async (count: number) => {
    let got = 0;
    const done = new Promise<void>((resolve) => {
      const onMessage = () => {
        if (++got < count) return;
        b.off("message", onMessage);
        resolve();
      };
      b.on("message", onMessage);
    });
    const cpuBefore = cpuMs(child.pid!) + cpuMs(process.pid);
    const start = nowMs();
    for (let i = 0; i < count; i++) {
      a.send(frame);
      if (a.bufferedAmount > 1 << 20) await new Promise((r) => setTimeout(r, 1));
    }
    await done;
    const perS = count / ((nowMs() - start) / 1000);
    return { perS, cpuMs: cpuMs(child.pid!) + cpuMs(process.pid) - cpuBefore };
  };
  const close = () => {
    a.close();
    b.close();
    child.kill("SIGTERM");
  };
  return { run, close };
}

async function pairwise(floor: Awaited<ReturnType<typeof startFloor>>) {
  const dataDir = mkdtempSync(join(tmpdir(), "pairwise-bench-relay-"));
  const relay = await startRelayProcess(dataDir);
  const child = relay.child;
  const server = { url: relay.url, publicKey: relay.publicKey } as RelayEndpoint;
  // Memory per idle authenticated connection: what one more costs once the server runs, read
  // from the server process before any load (a heap grown by a burst would absorb new
  // connections unseen). The devices are registered first (their rows and the database's page
  // cache are not connection memory); a first batch of connections is opened and not counted
  // (the first ones also make V8 grow its young generation and compile the connection code,
  // once per process), then the measured batch; all stay open, idle, through the load. Their
  // client side runs in a process of its own (relay-idle.ts), apart from the load's.
  const idle = await startProcess(
    [
      "bench/relay-idle.ts",
      relay.url,
      Buffer.from(relay.publicKey).toString("base64url"),
      String(IDLE_WARMUP_CONNECTIONS + IDLE_CONNECTIONS),
    ],
    /^registered \d+$/,
    process.env,
    [],
    // Registering 600 accounts (keys generated and uploaded) scales with the machine; bounded
    // generously, as the connect batches are.
    { stdin: true, readyTimeoutMs: 180_000 },
  );
  const connectIdle = async (n: number) => {
    idle.child.stdin!.write(`connect ${n}\n`);
    await idle.waitLine(/^connected \d+$/, 60_000);
  };
  const settle = () => new Promise((r) => setTimeout(r, 2000));
  await settle();
  await connectIdle(IDLE_WARMUP_CONNECTIONS);
  await settle();
  const before = rssKb(child.pid!);
  await connectIdle(IDLE_CONNECTIONS);
  await settle();
  const after = rssKb(child.pid!);
  const bytesPerIdle = ((after - before) * 1024) / IDLE_CONNECTIONS;

  const load = await relayLoad(server, server, { frameBytes: FRAME, window: WINDOW });
  // Where a latency tail comes from: each process's longest event-loop stall in this phase
  // (the server's from its own /metrics, whose event-loop histogram restarts at every scrape).
  const serverLag = async () => {
    const text = await (await fetch(`${relay.url.replace("ws://", "http://")}/metrics`)).text();
    return (
      Number(/^pairwise_server_process_nodejs_eventloop_lag_max_seconds (\S+)/m.exec(text)?.[1]) *
      1000
    );
  };
  // Scraped once before the warm-up as well, as a monitored server is all along: a first HTTP
  // request to a process deoptimises the stream code its WebSocket traffic shares (other object
  // shapes), and taken only just before the latency phase that was what the phase measured.
  await serverLag();
  const { submit, waitArrived } = load;
  await load.peak(WARMUP_MESSAGES);
  await floor.run(WARMUP_MESSAGES);
  const runs: number[] = [];
  const floorRuns: number[] = [];
  let floorCpuMs = 0;
  let serverCpuMs = 0;
  let loadCpuMs = 0;
  for (let i = 0; i < RUNS; i++) {
    const f = await floor.run(FLOOR_MESSAGES);
    floorRuns.push(f.perS);
    floorCpuMs += f.cpuMs;
    const serverBefore = cpuMs(child.pid!);
    const loadBefore = cpuMs(process.pid);
    mark("peak");
    runs.push(await load.peak(RELAY_MESSAGES));
    mark("peak-end");
    serverCpuMs += cpuMs(child.pid!) - serverBefore;
    loadCpuMs += cpuMs(process.pid) - loadBefore;
  }
  floor.close();
  // What a message costs the server, whatever else the machine was doing at the time.
  const serverCpuUs = (serverCpuMs * 1000) / (RUNS * RELAY_MESSAGES);
  // And what it costs the load (the devices' side, in this process), which shares the cores.
  const loadCpuUs = (loadCpuMs * 1000) / (RUNS * RELAY_MESSAGES);
  const relayPerS = percentile(runs, 50);
  // The floor's CPU per frame: its server and this process, over its timed runs.
  const floorCpuUs = (floorCpuMs * 1000) / (RUNS * FLOOR_MESSAGES);
  const floorPerS = percentile(floorRuns, 50);

  // Latency at half the peak rate: paced sends, submit-to-push time per message.
  const rate = relayPerS / 2;
  const latencyMessages = Math.round(rate * LATENCY_SECONDS);
  // Kept light (typed arrays of send and arrival times, a count of answers, no array of
  // promises): the load's own garbage collections land in the figures too. Each id is made as it
  // is sent, as clients make them (made all at once just before the phase, with their index, the
  // load's event loop stalled for up to 53 ms at its start).
  const warmupMessages = Math.round(rate * LATENCY_WARMUP_SECONDS);
  const total = warmupMessages + latencyMessages;
  // Every paced message counts towards the arrivals awaited; only the recorded ones are timed.
  const { at: arrivedAt, id: recordedId } = load.record(latencyMessages);
  const sentAt = new Float64Array(latencyMessages);
  await serverLag();
  const loadLag = monitorEventLoopDelay({ resolution: 1 });
  // The load's own garbage collections while recording: a full one pauses the arrivals' clock.
  const loadGcs: PerformanceEntry[] = [];
  const gcWatch = new PerformanceObserver((list) => loadGcs.push(...list.getEntries()));
  let gcFrom = 0;
  // CPU time so far (ms): the server's, this process's (the load's), the idle devices' process's
  // and the whole machine's.
  const cpuNow = () => ({
    server: cpuMs(child.pid!),
    load: cpuMs(process.pid),
    idle: cpuMs(idle.child.pid!),
    machine: machineBusyMs(),
  });
  let pacedCpu = cpuNow();
  let answered = 0;
  let failed: unknown;
  const t0 = nowMs();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - nowMs();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const recorded = i - warmupMessages;
    if (recorded === 0) {
      // The load's stall figure covers the recorded part only; the server's (its histogram
      // restarts at a scrape) the warm-up too: a scrape of /metrics costs the server a stall of
      // its own, and made at the start of the recorded part, it put the tail there.
      loadLag.enable();
      gcWatch.observe({ entryTypes: ["gc"] });
      gcFrom = performance.now();
      pacedCpu = cpuNow();
      mark("latency");
    }
    if (recorded >= 0) sentAt[recorded] = nowMs();
    const id = recorded >= 0 ? recordedId(recorded) : newMessageId();
    submit(id).then(
      () => answered++,
      (err: unknown) => (failed = err),
    );
  }
  while (answered < total && failed === undefined) {
    await new Promise((r) => setTimeout(r, 5));
  }
  if (failed !== undefined) throw new Error("a latency submission failed", { cause: failed });
  await waitArrived(total);
  mark("latency-end");
  // Node queues a GC entry for the next turn of the event loop: one turn first, or a collection
  // made handling the last arrivals would be missed. Only those that started while recording
  // count (with BENCH_STALL_WATCH the process observes GCs already, and one from just before
  // the observer started can reach it).
  const gcTo = performance.now();
  await new Promise((r) => setImmediate(r));
  loadGcs.push(...gcWatch.takeRecords());
  gcWatch.disconnect();
  const fullGcs = loadGcs.filter(
    (e) =>
      (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === GC_MAJOR &&
      e.startTime >= gcFrom &&
      e.startTime < gcTo,
  );
  // What a message costs at this rate (the server and the load, to set against their figures at
  // peak; and the whole machine, kernel included): CPU time from the first recorded send to the
  // last arrival, over the recorded messages (the warm-up's last arrivals and acks fall in it
  // too; at most a few ms of the phase). /proc counts in 10 ms ticks: over this phase a step of
  // about 0.3-1 µs a message, hence whole µs.
  const pacedEnd = cpuNow();
  const spent = (side: keyof typeof pacedEnd) => pacedEnd[side] - pacedCpu[side];
  const pacedUs = (side: keyof typeof pacedEnd) => (spent(side) * 1000) / latencyMessages;
  const pacedServerCpuUs = pacedUs("server");
  const pacedLoadCpuUs = pacedUs("load");
  const pacedMachineCpuUs = pacedUs("machine");
  // What else ran meanwhile, in ms of CPU over the recorded phase: the idle devices' process, and
  // the rest of the machine (other services, the kernel's own threads, and interrupt time not
  // charged to a process, some of it the bench's own loopback traffic). Each figure is read in
  // 10 ms ticks, so the rest is good to a few tens of ms, enough for the bursts it is for. On this
  // kind of machine a once-a-minute start of an Erlang VM (RabbitMQ's, not the project's) and
  // the kernel's kdamond took 150 ms of CPU in 250 ms, and 15 ms in 60 ms, in windows where the
  // latencies climbed (perf sched): a p99 over the target with a large figure here is worth
  // running again.
  const pacedOthersMs = {
    idle: spent("idle"),
    rest: Math.max(0, spent("machine") - spent("server") - spent("load") - spent("idle")),
  };
  const latencies = Array.from(sentAt, (t, i) => arrivedAt[i]! - t);
  // BENCH_LAT_DUMP=file: each latency message's send time (this process's monotonic clock, ms)
  // and latency, as JSON, to line the tail up with GC traces or other processes' stalls
  // (BENCH_STALL_WATCH prints those on the same clock); `offset` is wall-clock time minus that
  // clock, for the server's log lines.
  if (process.env.BENCH_LAT_DUMP) {
    writeFileSync(
      process.env.BENCH_LAT_DUMP,
      JSON.stringify({ offset: Date.now() - nowMs(), sentAt: Array.from(sentAt), latencies }),
    );
  }
  if (latencies.some((l) => Number.isNaN(l)))
    throw new Error("a latency message was missing when the count of arrivals was reached");
  loadLag.disable();
  const stalls = { serverMs: await serverLag(), loadMs: loadLag.max / 1e6 };

  await load.close();
  idle.child.stdin!.end();
  await new Promise((r) => idle.child.once("exit", r));
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  rmSync(dataDir, { recursive: true, force: true });
  return {
    floorPerS,
    floorRuns,
    floorCpuUs,
    relayPerS,
    runs,
    rate,
    latencies,
    bytesPerIdle,
    serverCpuUs,
    loadCpuUs,
    stalls,
    pacedServerCpuUs,
    pacedLoadCpuUs,
    pacedMachineCpuUs,
    pacedOthersMs,
    loadFullGcs: fullGcs.map((e) => e.duration),
  };
}

/** A median rate as printed, with the runs it was taken from. */
const medianOf = (median: number, runs: number[]) =>
  `${Math.round(median)} (median of ${runs.map((x) => Math.round(x)).join(", ")})`;

// The floor's process starts first; its timed runs come in turn with the relay's (see RUNS).
const floor = await startFloor();
const r = await pairwise(floor);
const { floorPerS } = r;
line("floor: plain ws relay", medianOf(floorPerS, r.floorRuns), "frames/s");
line("  floor CPU per frame (its server and this process)", r.floorCpuUs, "µs");
line("pairwise relay submit->deliver->ack", medianOf(r.relayPerS, r.runs), "messages/s");
line("server CPU per message at peak (all its threads)", r.serverCpuUs, "µs");
line("load CPU per message at peak (sender and receiver)", r.loadCpuUs, "µs");
// What the ratio target leaves a message here, for the server and the load together.
line(
  `  CPU per message the target allows (${CORES} cores at 0.3 x floor)`,
  cpuBudgetUs(0.3, floorPerS),
  "µs",
);
const ratio = r.relayPerS / floorPerS;
line("ratio relay / floor (target >= 0.3)", ratio);
line(`latency at ${Math.round(r.rate)}/s p50`, percentile(r.latencies, 50), "ms");
line("latency p99 (target <= 20)", percentile(r.latencies, 99), "ms");
line(
  "  CPU per message at that rate: server, load, whole machine",
  `${Math.round(r.pacedServerCpuUs)}, ${Math.round(r.pacedLoadCpuUs)}, ${Math.round(r.pacedMachineCpuUs)}`,
  "µs",
);
line(
  "  CPU while recording: the idle devices' process, the rest of the machine",
  `${r.pacedOthersMs.idle}, ${r.pacedOthersMs.rest}`,
  "ms",
);
line(
  "  the load's full GCs while recording",
  r.loadFullGcs.length > 0
    ? `${r.loadFullGcs.length} (longest ${round(Math.max(...r.loadFullGcs), 1)} ms)`
    : "none",
);
line(
  "longest event-loop stall: server (from the warm-up on), load",
  `${round(r.stalls.serverMs, 1)}, ${round(r.stalls.loadMs, 1)}`,
  "ms",
);
line(
  `server memory per idle connection (${IDLE_CONNECTIONS} after ${IDLE_WARMUP_CONNECTIONS}; target <= 20)`,
  r.bytesPerIdle / 1024,
  "KiB (RSS delta)",
);
emitResult({
  bench: "relay",
  floor_per_s: round(floorPerS, 0),
  relay_per_s: round(r.relayPerS, 0),
  ratio: round(ratio, 3),
  p99_ms: round(percentile(r.latencies, 99), 2),
  bytes_per_idle_conn: Math.round(r.bytesPerIdle),
});
