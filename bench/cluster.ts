// npm run bench -- cluster
// Relay throughput (submit -> deliver -> acknowledge) on the SQLite single node, on one node with
// PostgreSQL + NATS, and on two nodes (sender on one, receiver on the other); then the queue's
// PostgreSQL operations per second through the store beside `pgbench` running the same SQL with
// the same concurrency, in the same run. Uses the PostgreSQL (127.0.0.1:5432, database `test`)
// and NATS (127.0.0.1:4222) running on this machine; override with PAIRWISE_BENCH_POSTGRES and
// PAIRWISE_BENCH_NATS.
import { execFile, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { openPgServerStore } from "../apps/server/src/internal/store/pg-server-store.ts";
import { emitResult, line, nowMs, round } from "./harness.ts";
import { startRelayProcess } from "./processes.ts";
import { relayLoad, type RelayEndpoint } from "./relay-load.ts";

const PG = process.env.PAIRWISE_BENCH_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";
const NATS = process.env.PAIRWISE_BENCH_NATS ?? "nats://127.0.0.1:4222";
const schema = `pw_bench_${randomBytes(5).toString("hex")}`;
const FRAME = 200;
const WINDOW = 512;
const WARMUP = 3_000;
const MESSAGES = 12_000;
const QUEUE_CLIENTS = 8;
const QUEUE_SECONDS = 6;
const run = promisify(execFile);

const base = mkdtempSync(join(tmpdir(), "pairwise-bench-cluster-"));
const children: ChildProcess[] = [];

const pids = new Map<RelayEndpoint, number>();

async function node(dataDir: string, cluster: boolean): Promise<RelayEndpoint> {
  const relay = await startRelayProcess(dataDir, {
    args: cluster ? ["--store", PG, "--bus", NATS] : [],
    env: { PAIRWISE_SERVER_PG_SCHEMA: schema, PAIRWISE_SERVER_LOG_LEVEL: "warn" },
  });
  children.push(relay.child);
  const endpoint = { url: relay.url, publicKey: relay.publicKey } as RelayEndpoint;
  pids.set(endpoint, relay.child.pid ?? 0);
  return endpoint;
}

/** CPU time (user + system) a process has used, in microseconds (Linux, 100 ticks/s). */
function cpuMicros(pid: number): number {
  const fields =
    readFileSync(`/proc/${String(pid)}/stat`, "utf8")
      .split(") ")[1]
      ?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/** Messages per second, and the relay nodes' CPU time per message (all nodes together). */
async function throughput(
  sender: RelayEndpoint,
  receiver: RelayEndpoint,
  names: [string, string],
): Promise<{ perS: number; cpuUsPerMessage: number }> {
  const load = await relayLoad(sender, receiver, { frameBytes: FRAME, window: WINDOW, names });
  await load.peak(WARMUP);
  const nodePids = [...new Set([pids.get(sender) ?? 0, pids.get(receiver) ?? 0])];
  const before = nodePids.reduce((sum, pid) => sum + cpuMicros(pid), 0);
  const perS = await load.peak(MESSAGES);
  const used = nodePids.reduce((sum, pid) => sum + cpuMicros(pid), 0) - before;
  await load.close();
  return { perS, cpuUsPerMessage: used / MESSAGES };
}

async function stopAll(): Promise<void> {
  for (const c of children.splice(0)) {
    if (c.exitCode !== null) continue;
    c.kill("SIGTERM");
    await new Promise((r) => c.once("exit", r));
  }
}

// ---------------------------------------------------------------- relay throughput
const sqliteNode = await node(join(base, "sqlite"), false);
const sqlite = await throughput(sqliteNode, sqliteNode, ["alice", "bob"]);
const sqlitePerS = sqlite.perS;
line("SQLite, one node", sqlitePerS, "messages/s");
line("  relay CPU per message", sqlite.cpuUsPerMessage, "µs");
await stopAll();

const clusterDir = join(base, "cluster"); // one server key for the cluster's nodes
const pgA = await node(clusterDir, true);
const pg1 = await throughput(pgA, pgA, ["alice1", "bob1"]);
const pg1PerS = pg1.perS;
line("PostgreSQL + NATS, one node", pg1PerS, "messages/s");
line("  relay CPU per message", pg1.cpuUsPerMessage, "µs");
const pgB = await node(clusterDir, true);
const pg2 = await throughput(pgA, pgB, ["alice2", "bob2"]);
const pg2PerS = pg2.perS;
line("PostgreSQL + NATS, two nodes (sender on A, receiver on B)", pg2PerS, "messages/s");
line("  relay CPU per message (both nodes)", pg2.cpuUsPerMessage, "µs");
await stopAll();

// ---------------------------------------------------------------- queue operations vs pgbench
// One "operation" is one message's trip through the queue: the enqueue transaction (recipient
// row lock, then dedup claim and insert in one statement), the fetch, and the ack transaction.
// The pgbench script below sends the same statements (one message per transaction; the store
// may put several concurrent ones in one transaction: that is its group commit).
const store = await openPgServerStore({ connectionString: PG, schema, maxConnections: 10 });
const key = (n: number, size = 32) => ({
  id: n,
  publicKey: new Uint8Array(size).fill(n),
  signature: new Uint8Array(64).fill(n),
});
for (let n = 1; n <= QUEUE_CLIENTS; n++) {
  await store.createAccount({
    accountId: `pgbench-${n}`,
    accountKey: new Uint8Array(33).fill(n),
    signedDeviceList: new Uint8Array(8),
    deviceListTimestamp: 1,
    now: Date.now(),
    primary: {
      deviceId: 1,
      keyIndex: 0,
      registrationId: n,
      identityKey: new Uint8Array(33).fill(n),
      signedDeviceIdentity: new Uint8Array(10),
      noiseKey: randomBytes(32),
      name: "bench",
      platform: "bench",
      keys: {
        signedPreKey: key(1),
        lastResortKyberPreKey: key(2, 1568),
        preKeys: [],
        kyberPreKeys: [],
      },
    },
  });
}
const envelope = new Uint8Array(FRAME).fill(0xab);
const FAR = 9_999_999_999_999;
let ops = 0;
const cycle = async (n: number, i: number) => {
  const accountId = `pgbench-${n}`;
  const { seqs } = await store.enqueue([{ accountId, deviceId: 1, envelope }], {
    now: 1,
    expiresAt: FAR,
    dedupKey: `k-${n}-${i}-${randomBytes(6).toString("hex")}`,
  });
  const seq = seqs[0] ?? 0;
  await store.fetchQueue(accountId, 1, seq - 1, 200);
  await store.ack(accountId, 1, [seq]);
  ops++;
};
const measureStore = async (seconds: number) => {
  ops = 0;
  const end = nowMs() + seconds * 1000;
  const start = nowMs();
  await Promise.all(
    Array.from({ length: QUEUE_CLIENTS }, async (_, c) => {
      for (let i = 0; nowMs() < end; i++) await cycle(c + 1, i);
    }),
  );
  return ops / ((nowMs() - start) / 1000);
};
await measureStore(1); // warm-up
const storeOpsPerS = await measureStore(QUEUE_SECONDS);
await store.close();

// The same statements as the store sends, per message, as a pgbench script.
const script = join(base, "queue.sql");
writeFileSync(
  script,
  `\\set n random(1, ${QUEUE_CLIENTS})
\\set r random(1, 1000000000000)
BEGIN;
SELECT d.dev FROM devices d JOIN (SELECT DISTINCT * FROM unnest(ARRAY['pgbench-' || :n]::text[], ARRAY[1]::int[])) AS t (a, i) ON d.account_id = t.a AND d.device_id = t.i ORDER BY d.dev FOR UPDATE OF d \\gset
WITH claim AS (INSERT INTO dedup (key, expires_at) SELECT 'k-' || :client_id || '-' || :r, ${FAR} WHERE ('k-' || :client_id || '-' || :r)::text IS NOT NULL ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE dedup.expires_at <= 1 RETURNING 1), ok AS (SELECT ('k-' || :client_id || '-' || :r)::text IS NULL OR EXISTS (SELECT 1 FROM claim) AS claimed), inserted AS (INSERT INTO queue (dev, envelope, enqueued_at, expires_at) SELECT t.dev, t.envelope, 1, ${FAR} FROM unnest(ARRAY[:dev]::bigint[], ARRAY[decode(repeat('ab', ${FRAME}), 'hex')]::bytea[]) WITH ORDINALITY AS t (dev, envelope, ord) WHERE (SELECT claimed FROM ok) ORDER BY t.ord RETURNING seq) SELECT (SELECT claimed FROM ok) AS claimed, (array(SELECT seq FROM inserted ORDER BY seq))[1] AS seq \\gset
COMMIT;
SELECT q.seq, q.envelope, q.enqueued_at FROM queue q JOIN devices d ON d.dev = q.dev WHERE d.account_id = 'pgbench-' || :n AND d.device_id = 1 AND q.seq > :seq - 1 ORDER BY q.seq LIMIT 200;
BEGIN;
DELETE FROM queue WHERE seq = ANY(ARRAY[:seq]::bigint[]) AND dev = (SELECT dev FROM devices WHERE account_id = 'pgbench-' || :n AND device_id = 1);
COMMIT;
`,
);
const url = new URL(PG);
const pgbench = async (seconds: number) => {
  const { stdout } = await run(
    "pgbench",
    [
      "-n",
      "-M",
      "extended",
      "-c",
      String(QUEUE_CLIENTS),
      "-j",
      "2",
      "-T",
      String(seconds),
      "-f",
      script,
      "-h",
      url.hostname,
      "-p",
      url.port || "5432",
      "-U",
      decodeURIComponent(url.username || "postgres"),
      url.pathname.slice(1),
    ],
    { env: { ...process.env, PGOPTIONS: `-c search_path=${schema}` } },
  );
  const m = /tps = ([\d.]+)/.exec(stdout);
  if (!m?.[1]) throw new Error(`pgbench printed no tps: ${stdout}`);
  return Number(m[1]);
};
await pgbench(1);
const pgbenchOpsPerS = await pgbench(QUEUE_SECONDS);
const ratio = storeOpsPerS / pgbenchOpsPerS;

const c = new pg.Client({ connectionString: PG });
await c.connect();
await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
await c.end();
rmSync(base, { recursive: true, force: true });

line(`queue through the store (${QUEUE_CLIENTS} concurrent)`, storeOpsPerS, "messages/s");
line(`pgbench, same SQL (${QUEUE_CLIENTS} clients)`, pgbenchOpsPerS, "messages/s");
line("ratio store / pgbench (target >= 0.7)", ratio);
line("one node / SQLite", pg1PerS / sqlitePerS);
line("two nodes / one node (two cores: no real scaling here)", pg2PerS / pg1PerS);
// What a node costs per message predicts larger machines better than two nodes on two cores:
// one core of relay work carries 1e6 / (CPU µs per message) messages per second, PostgreSQL's
// own CPU aside.
line(
  "one relay core's worth on PostgreSQL (1e6 / CPU µs)",
  1e6 / pg1.cpuUsPerMessage,
  "messages/s",
);
emitResult({
  bench: "cluster",
  sqlite_per_s: round(sqlitePerS, 0),
  pg1_per_s: round(pg1PerS, 0),
  pg2_per_s: round(pg2PerS, 0),
  pg_ops_per_s: round(storeOpsPerS, 0),
  pgbench_ops_per_s: round(pgbenchOpsPerS, 0),
  sqlite_cpu_us_per_msg: round(sqlite.cpuUsPerMessage, 1),
  pg1_cpu_us_per_msg: round(pg1.cpuUsPerMessage, 1),
  pg2_cpu_us_per_msg: round(pg2.cpuUsPerMessage, 1),
  ratio_pgbench: round(ratio, 3),
});
