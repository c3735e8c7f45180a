// Two relay nodes in this process sharing the PostgreSQL and NATS running on this machine
// (override with PAIRWISE_TEST_POSTGRES and PAIRWISE_TEST_NATS): what only the bus can do.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningServer } from "../src/internal/server.ts";
import { TestDevice, connect, startTestServer, tempDir } from "./support.ts";

const PG = process.env.PAIRWISE_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";
const NATS = process.env.PAIRWISE_TEST_NATS ?? "nats://127.0.0.1:4222";
const pgSchema = `pw_nodes_${randomBytes(5).toString("hex")}`;
const dataDir = tempDir("pairwise-cluster-");
let a: RunningServer;
let b: RunningServer;

beforeAll(async () => {
  const config = { dataDir, store: PG, pgSchema, bus: NATS, clusterPollMs: 60_000 };
  a = await startTestServer(config);
  b = await startTestServer(config);
});

afterAll(async () => {
  await a.close();
  await b.close();
  const c = new pg.Client({ connectionString: PG });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS ${pgSchema} CASCADE`);
  await c.end();
});

describe("relay nodes linked by NATS", () => {
  it("resolves a device connected to two nodes at once to the newer connection", async () => {
    const d = await TestDevice.register(a, `two-${randomBytes(3).toString("hex")}`);
    const stale = d.conn;
    const fresh = await connect(b, d.noiseKeys, d.onPush);
    const closed = await Promise.race([
      stale.ended.then(() => "closed"),
      new Promise((r) => setTimeout(() => r("still open"), 10_000)),
    ]);
    expect(closed).toBe("closed");
    // The newer connection works.
    expect((await fresh.request({ case: "ping", value: {} })).case).toBe("empty");
    await fresh.close();
  });

  it("wakes delivery on another node at once (no polling: the poll interval is a minute)", async () => {
    const sender = await TestDevice.register(a, `s-${randomBytes(3).toString("hex")}`);
    const receiver = await TestDevice.register(b, `r-${randomBytes(3).toString("hex")}`);
    await receiver.conn.request({ case: "startDelivery", value: {} });
    await receiver.waitFor((p) => p.some((x) => x.kind.case === "queueEmpty"), 10_000);
    await sender.conn.request({
      case: "submitMessage",
      value: {
        messageId: "m-1",
        copies: [
          {
            accountId: receiver.accountId,
            deviceId: 1,
            registrationId: receiver.crypto.registrationId,
            type: 2,
            body: new Uint8Array(40).fill(1),
          },
        ],
      },
    });
    await receiver.waitFor(() => receiver.envelopes().length === 1, 10_000);
    expect(receiver.envelopes()[0]?.messageId).toBe("m-1");
  });

  it("disconnects a device removed through another node", async () => {
    const d = await TestDevice.register(b, `rm-${randomBytes(3).toString("hex")}`);
    await d.conn.request({ case: "ping", value: {} });
    a.relay.context.disconnect(d.accountId, 1);
    await d.waitFor((p) => p.some((x) => x.kind.case === "deviceRemoved"), 10_000);
    const closed = await Promise.race([
      d.conn.ended.then(() => "closed"),
      new Promise((r) => setTimeout(() => r("still open"), 10_000)),
    ]);
    expect(closed).toBe("closed");
  });

  it("reports the database pool and the bus in /healthz and /metrics", async () => {
    const base = a.url.replace("ws://", "http://");
    const health = (await (await fetch(`${base}/healthz`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({
      status: "ok",
      store: "postgres",
      database: { ok: true, pool: { max: 10 } },
      bus: { ok: true },
    });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/pairwise_db_pool_connections\{state="max"\} 10/);
    expect(metrics).toMatch(/pairwise_bus_rtt_seconds \d/);
  });
});
