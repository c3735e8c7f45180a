import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";

/** The server's Prometheus metrics, on a registry of their own (no global state). */
export interface ServerMetrics {
  registry: Registry;
  connections: Gauge;
  queueDepth: Gauge;
  submitted: Counter;
  delivered: Counter;
  queueReads: Counter;
  acknowledged: Counter;
  errors: Counter<"code">;
  requests: Counter<"type">;
  /** Reports the PostgreSQL pool's figures at scrape time. */
  watchPool(
    read: () => { total: number; idle: number; waiting: number; max: number } | undefined,
  ): void;
  /** Reports the bus round trip at scrape time. */
  watchBus(read: () => Promise<number>): void;
}

/** Creates the metrics; `queueDepth` is read from the store at scrape time. */
export function createServerMetrics(readQueueDepth: () => Promise<number>): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "pairwise_server_process_" });
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
    submitted: new Counter({
      name: "pairwise_messages_submitted_total",
      help: "Per-device copies accepted",
      registers: [registry],
    }),
    delivered: new Counter({
      name: "pairwise_messages_delivered_total",
      help: "Per-device copies pushed to devices",
      registers: [registry],
    }),
    queueReads: new Counter({
      name: "pairwise_queue_reads_total",
      help: "Reads of a device's queue by its delivery loop (mail committed while the device is caught up is pushed without one)",
      registers: [registry],
    }),
    acknowledged: new Counter({
      name: "pairwise_messages_acknowledged_total",
      help: "Per-device copies acknowledged and deleted",
      registers: [registry],
    }),
    errors: new Counter({
      name: "pairwise_errors_total",
      help: "Refused requests by error code",
      labelNames: ["code"],
      registers: [registry],
    }),
    requests: new Counter({
      name: "pairwise_requests_total",
      help: "Requests by type",
      labelNames: ["type"],
      registers: [registry],
    }),
  };
}
