// Three relay nodes as separate processes on the PostgreSQL and NATS running on this machine
// (127.0.0.1:5432 database `test`, 127.0.0.1:4222; override with PAIRWISE_TEST_POSTGRES and
// PAIRWISE_TEST_NATS): clients spread across the nodes, the client scenarios across them, and
// one node killed with SIGKILL mid-traffic while its clients move to another.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  PairwiseDevice,
  approveLink,
  createGroup,
  linkAsCompanion,
  sendGroupText,
  type StoredMessage,
} from "@pairwise/client";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { home, until } from "./support.ts";

const PG = process.env.PAIRWISE_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";
const NATS = process.env.PAIRWISE_TEST_NATS ?? "nats://127.0.0.1:4222";
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const serverCli = join(repoRoot, "apps/server/src/cli.ts");
const schema = `pw_cluster_${randomBytes(5).toString("hex")}`;
const dataDir = home("cluster"); // one key and one blob directory shared by the nodes

interface Node {
  url: string;
  child: ChildProcess;
  stderr: () => string;
}

async function startNode(): Promise<Node> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PAIRWISE_")) env[k] = v;
  env.PAIRWISE_SERVER_PG_SCHEMA = schema;
  env.PAIRWISE_SERVER_LOG_LEVEL = "warn";
  const child = spawn(
    process.execPath,
    ["--import", "tsx", serverCli, "--data", dataDir, "--port", "0", "--store", PG, "--bus", NATS],
    { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
  const url = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`node did not start: ${err}`)), 30_000);
    const check = () => {
      const m = /listening on (ws:\/\/[^\s]+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        ok(m[1]);
      }
    };
    child.stdout.on("data", check);
    child.once("exit", () => {
      clearTimeout(timer);
      fail(new Error(`node exited: ${err}`));
    });
  });
  return { url, child, stderr: () => err };
}

const nodes: Node[] = [];
const devices: PairwiseDevice[] = [];

beforeAll(async () => {
  nodes.push(await startNode()); // the first node creates the shared server key
  nodes.push(...(await Promise.all([startNode(), startNode()])));
}, 90_000);

afterAll(async () => {
  for (const d of devices) await d.close().catch(() => undefined);
  for (const n of nodes) if (n.child.exitCode === null) n.child.kill("SIGTERM");
  await Promise.all(
    nodes
      .filter((n) => n.child.exitCode === null && n.child.signalCode === null)
      .map((n) => new Promise((r) => n.child.once("exit", r))),
  );
  const c = new pg.Client({ connectionString: PG });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await c.end();
});

/** The cluster as a client sees it: every node, the preferred one first. */
const cluster = (first: number) =>
  [first, ...[0, 1, 2].filter((i) => i !== first)].map((i) => nodes[i]?.url).join(",");

function open(name: string): PairwiseDevice {
  const d = PairwiseDevice.open({ home: home(name), timeoutMs: 20_000 });
  d.deliveryReceipts = false;
  devices.push(d);
  return d;
}

async function register(name: string, node: number): Promise<PairwiseDevice> {
  const d = open(name);
  await d.register({ server: { url: cluster(node) }, accountId: name });
  return d;
}

async function linkCompanion(primary: PairwiseDevice, name: string, node: number) {
  const d = open(name);
  let code: string | undefined;
  const linked = linkAsCompanion(d, {
    server: { url: cluster(node) },
    deviceName: name,
    timeoutMs: 20_000,
    onLinkCode: (u) => (code ??= u),
  });
  await until(() => code !== undefined, 20_000);
  await approveLink(primary, code ?? "", () => Promise.resolve(true), { historySync: false });
  await linked;
  return d;
}

function inbox(d: PairwiseDevice) {
  const got: StoredMessage[] = [];
  d.on("message", (m) => got.push(m));
  return got;
}

describe("three relay nodes on PostgreSQL and NATS", () => {
  let alice: PairwiseDevice;
  let aliceLaptop: PairwiseDevice;
  let bob: PairwiseDevice;
  let carol: PairwiseDevice;
  const got = new Map<PairwiseDevice, StoredMessage[]>();

  it("registers and links across nodes (the companion waits on another node than the primary)", async () => {
    alice = await register("alice", 0);
    bob = await register("bob", 1);
    carol = await register("carol", 2);
    aliceLaptop = await linkCompanion(alice, "alice-laptop", 2);
    for (const d of [alice, aliceLaptop, bob, carol]) {
      got.set(d, inbox(d));
      await d.startReceiving();
    }
    expect((await alice.devices()).map((x) => x.id).sort()).toEqual([1, 2]);
  }, 90_000);

  it("delivers 1:1 messages across nodes exactly once, with sync copies", async () => {
    for (let i = 0; i < 10; i++) await alice.sendText("bob", `a->b ${i}`);
    for (let i = 0; i < 10; i++) await bob.sendText("alice", `b->a ${i}`);
    const texts = (d: PairwiseDevice) => (got.get(d) ?? []).map((m) => m.text);
    await until(() => texts(bob).length >= 10 && texts(alice).length >= 10, 30_000);
    await until(() => texts(aliceLaptop).length >= 20, 30_000);
    expect(texts(bob)).toEqual(Array.from({ length: 10 }, (_, i) => `a->b ${i}`));
    expect(texts(alice)).toEqual(Array.from({ length: 10 }, (_, i) => `b->a ${i}`));
    // The laptop (node C) sees both directions: bob's messages and alice's sync copies.
    expect(new Set(texts(aliceLaptop)).size).toBe(20);
    expect(texts(aliceLaptop)).toHaveLength(20);
  }, 90_000);

  it("carries a group across all three nodes", async () => {
    const group = await createGroup(alice, "trio", ["bob", "carol"]);
    for (let i = 0; i < 5; i++) await sendGroupText(carol, group.id, `group ${i}`);
    const groupTexts = (d: PairwiseDevice) =>
      (got.get(d) ?? []).filter((m) => m.chat === `group:${group.id}`).map((m) => m.text);
    await until(() => [alice, aliceLaptop, bob].every((d) => groupTexts(d).length >= 5), 30_000);
    for (const d of [alice, aliceLaptop, bob])
      expect(groupTexts(d)).toEqual(Array.from({ length: 5 }, (_, i) => `group ${i}`));
  }, 90_000);

  it("loses nothing and shows nothing twice when a node is killed mid-traffic", async () => {
    // Bob is on node B; kill -9 it while alice (node A) keeps sending to him. Bob's device
    // reconnects to another node and receives the rest; every send alice saw accepted arrives.
    const before = (got.get(bob) ?? []).length;
    const accepted: string[] = [];
    let killed = false;
    const sending = (async () => {
      for (let i = 0; i < 60; i++) {
        const text = `burst ${i}`;
        if (i === 20) {
          nodes[1]?.child.kill("SIGKILL");
          killed = true;
        }
        await alice.sendText("bob", text);
        accepted.push(text);
      }
    })();
    await sending;
    expect(killed).toBe(true);
    const bobTexts = () => (got.get(bob) ?? []).slice(before).map((m) => m.text);
    await until(() => bobTexts().length >= accepted.length, 60_000);
    expect(bobTexts().sort()).toEqual([...accepted].sort());
    expect(new Set(bobTexts()).size).toBe(bobTexts().length);
  }, 120_000);
});
