import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";

/**
 * A counter bumped once or more per message: a plain number, added to its Prometheus counter at
 * scrape time. prom-client's own `inc` hashes the labels and rebuilds the entry on every call
 * (about 3% of the relay's time per message under load).
 */
export interface HotCounter {
  inc(by?: number): void;
}

/** The server's Prometheus metrics, on a registry of their own (no global state). */
export interface ServerMetrics {
  registry: Registry;
  connections: Gauge;
  queueDepth: Gauge;
  submitted: HotCounter;
  delivered: HotCounter;
  queueReads: HotCounter;
  acknowledged: HotCounter;
  errors: Counter<"code">;
  /** Requests by type (a {@link HotCounter} per `type` label). */
  requests: { inc(type: string): void };
  /** Reports the PostgreSQL pool's figures at scrape time. */
  watchPool(
    read: () => { total: number; idle: number; waiting: number; max: number } | undefined,
  ): void;
  /** Reports the bus round trip at scrape time. */
  watchBus(read: () => Promise<number>): void;
}

/** A {@link HotCounter} behind a Prometheus counter named `name`. */
function hotCounter(registry: Registry, name: string, help: string): HotCounter {
  let pending = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.inc(pending);
      pending = 0;
    },
  });
  return {
    inc(by = 1) {
      pending += by;
    },
  };
}

/** {@link HotCounter}s behind one Prometheus counter with a `type` label. */
function hotCountersByType(
  registry: Registry,
  name: string,
  help: string,
): ServerMetrics["requests"] {
  const pending = new Map<string, number>();
  new Counter({
    name,
    help,
    labelNames: ["type"],
    registers: [registry],
    collect() {
      for (const [type, n] of pending) {
        this.inc({ type }, n);
        pending.set(type, 0);
      }
    },
  });
  return {
    inc(type) {
      pending.set(type, (pending.get(type) ?? 0) + 1);
    },
  };
}

const DEFAULT_PREFIX = "pairwise_server_process_";

/** Default process metrics left out (see createServerMetrics). */
const WALKING_DEFAULT_METRICS = [
  "process_open_fds",
  "nodejs_active_handles",
  "nodejs_active_handles_total",
  "nodejs_active_resources",
  "nodejs_active_resources_total",
];

/** Creates the metrics; `queueDepth` is read from the store at scrape time. */
export function createServerMetrics(readQueueDepth: () => Promise<number>): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: DEFAULT_PREFIX });
  // Each of these walks every open file descriptor or libuv handle (two per connection) at every
  // scrape, on the event loop: with 600 idle connections a scrape took 5.3–15.2 ms with them.
  // `pairwise_connections` counts connections instead.
  for (const name of WALKING_DEFAULT_METRICS) registry.removeSingleMetric(DEFAULT_PREFIX + name);
  let readPool: Parameters<ServerMetrics["watchPool"]>[0] = () => undefined;
  let readBus: (() => Promise<number>) | undefined;
  new Gauge({
    name: "pairwise_db_pool_connections",
    help: "PostgreSQL pool connections by state (total, idle, waiting clients, max)",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      const p = readPool();
      if (!p) return;
      for (const [state, n] of Object.entries(p)) this.set({ state }, n);
    },
  });
  new Gauge({
    name: "pairwise_bus_rtt_seconds",
    help: "Round trip to the NATS bus (-1 when disconnected)",
    registers: [registry],
    async collect() {
      if (!readBus) return;
      this.set(
        await readBus().then(
          (ms) => ms / 1000,
          () => -1,
        ),
      );
    },
  });
  return {
    watchPool: (read) => {
      readPool = read;
    },
    watchBus: (read) => {
      readBus = read;
    },
    registry,
    connections: new Gauge({
      name: "pairwise_connections",
      help: "Open authenticated device connections",
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: "pairwise_queue_depth",
      help: "Messages stored and not yet acknowledged",
      registers: [registry],
      async collect() {
        this.set(await readQueueDepth());
      },
    }),
    submitted: hotCounter(
      registry,
      "pairwise_messages_submitted_total",
      "Per-device copies accepted",
    ),
    delivered: hotCounter(
      registry,
      "pairwise_messages_delivered_total",
      "Per-device copies pushed to devices",
    ),
    queueReads: hotCounter(
      registry,
      "pairwise_queue_reads_total",
      "Reads of a device's queue by its delivery loop (mail committed while the device is caught up is pushed without one)",
    ),
    acknowledged: hotCounter(
      registry,
      "pairwise_messages_acknowledged_total",
      "Per-device copies acknowledged and deleted",
    ),
    errors: new Counter({
      name: "pairwise_errors_total",
      help: "Refused requests by error code",
      labelNames: ["code"],
      registers: [registry],
    }),
    requests: hotCountersByType(registry, "pairwise_requests_total", "Requests by type"),
  };
}
