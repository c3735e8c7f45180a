// A bounded load test on loopback: 1,000 concurrent Noise-over-WebSocket connections, each with
// its own Noise key, against an in-process relay; all ping at once; 50 of them register accounts
// and exchange real encrypted messages while the rest stay open; then all close and the server's
// connection count returns to 0. Prints wall times and an approximate RSS cost per connection.
import { rmSync } from "node:fs";
import { performance } from "node:perf_hooks";
import type { RelayConnection } from "@pairwise/client";
import { generateNoiseKeyPair, type NoiseKeyPair } from "@pairwise/transport";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerOver } from "./fixtures/register-over.ts";
import { decryptText, sendText } from "./fixtures/text-sender.ts";
import { connect, startTestServer, type TestDevice } from "./support.ts";

/** Connections in all, opened this many at a time (the loopback accept backlog is finite). */
const CONNECTIONS = 1000;
const BATCH = 100;
/** Connections that register accounts and exchange messages. */
const ACTIVE = 50;

type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;
let base: string;

beforeAll(async () => {
  server = await startTestServer();
  base = `http://127.0.0.1:${server.port}`;
});
afterAll(async () => {
  await server.close();
  rmSync(server.dataDir, { recursive: true, force: true });
});

/** Polls `predicate` every 20 ms for at most `timeoutMs`. */
async function waitUntil(predicate: () => boolean, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function healthConnections(): Promise<number> {
  const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(5000) });
  expect(res.status).toBe(200);
  return ((await res.json()) as { connections: number }).connections;
}

async function metricConnections(): Promise<number> {
  const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const m = /^pairwise_connections (\d+)$/m.exec(text);
  if (!m) throw new Error("pairwise_connections missing from /metrics");
  return Number(m[1]);
}

const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

describe("relay under 1,000 concurrent connections", () => {
  it("opens, pings, exchanges messages on a subset, and closes all", async () => {
    const keys: NoiseKeyPair[] = [];
    const conns: RelayConnection[] = [];
    const devices: Array<TestDevice | undefined> = [];
    const rssBefore = process.memoryUsage().rss;

    const t0 = performance.now();
    for (let start = 0; start < CONNECTIONS; start += BATCH) {
      const batch = await Promise.all(
        Array.from({ length: BATCH }, (_, j) => {
          const i = start + j;
          const k = generateNoiseKeyPair();
          keys[i] = k;
          return connect(server, k, (p) => devices[i]?.onPush(p));
        }),
      );
      conns.push(...batch);
    }
    const openMs = performance.now() - t0;
    expect(conns).toHaveLength(CONNECTIONS);
    // The client finishes the Noise handshake one message before the server does.
    await waitUntil(() => server.relay.connectionCount === CONNECTIONS, "all sessions");
    expect(await healthConnections()).toBe(CONNECTIONS);

    const t1 = performance.now();
    const answers = await Promise.all(conns.map((c) => c.request({ case: "ping", value: {} })));
    const pingMs = performance.now() - t1;
    expect(answers.filter((a) => a.case === "empty")).toHaveLength(CONNECTIONS);
    const rssOpen = process.memoryUsage().rss;

    // A subset registers in place and sends one real message each, to the next one round.
    const t2 = performance.now();
    const active = await Promise.all(
      Array.from({ length: ACTIVE }, async (_, i) => {
        const d = await registerOver(conns[i]!, keys[i]!, `load-${i}`);
        devices[i] = d;
        return d;
      }),
    );
    await Promise.all(
      active.map((d, i) => sendText(d, `load-${(i + 1) % ACTIVE}`, `hello from ${i}`, `m-${i}`)),
    );
    await Promise.all(
      active.map(async (d, i) => {
        await d.conn.request({ case: "startDelivery", value: {} });
        await d.waitFor(() => d.envelopes().length >= 1, 15_000);
        const e = d.envelopes()[0]!;
        expect(e.senderAccount).toBe(`load-${(i + ACTIVE - 1) % ACTIVE}`);
        expect((await decryptText(d, e)).text).toBe(`hello from ${(i + ACTIVE - 1) % ACTIVE}`);
        await d.conn.request({ case: "ack", value: { seqs: [e.seq] } });
      }),
    );
    const exchangeMs = performance.now() - t2;
    expect(active.every((d) => d.envelopes().length === 1)).toBe(true);
    expect(await server.relay.context.store.queueDepth()).toBe(0);

    // /metrics counts authenticated device connections; /healthz counts every session.
    expect(await metricConnections()).toBe(ACTIVE);
    expect(await healthConnections()).toBe(CONNECTIONS);
    expect(server.relay.connectionCount).toBe(CONNECTIONS);

    const t3 = performance.now();
    await Promise.all(conns.map((c) => c.close()));
    await waitUntil(() => server.relay.connectionCount === 0, "connections to drain");
    const closeMs = performance.now() - t3;
    expect(await healthConnections()).toBe(0);
    expect(await metricConnections()).toBe(0);

    console.log(
      [
        `load: opened ${CONNECTIONS} Noise/WebSocket connections (batches of ${BATCH}) in ${openMs.toFixed(0)} ms`,
        `load: ${CONNECTIONS} concurrent pings answered in ${pingMs.toFixed(0)} ms`,
        `load: ${ACTIVE} registrations + ${ACTIVE} encrypted messages sent, received, acked in ${exchangeMs.toFixed(0)} ms`,
        `load: closed all and drained to 0 in ${closeMs.toFixed(0)} ms`,
        `load: RSS ${mb(rssBefore)} MB -> ${mb(rssOpen)} MB with ${CONNECTIONS} open, ` +
          `~${((rssOpen - rssBefore) / CONNECTIONS / 1024).toFixed(1)} KB per connection ` +
          `(approximation: server and client ends share this process, GC timing not controlled)`,
      ].join("\n"),
    );
  }, 60_000);
});
