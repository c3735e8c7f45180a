// npm run bench -- e2e
// Through a real relay (its own process) on loopback: Alice (2 devices) to Bob (3 devices) 1:1
// messages per second, and a 20-member group (2 devices each) messages per second; beside them
// the core floor (raw libsignal per-device encrypt+decrypt) measured in the same run.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  PairwiseDevice,
  approveLink,
  createGroup,
  linkAsCompanion,
  sendGroupText,
} from "@pairwise/client";
import { rawFloor } from "./floor.ts";
import { collectGarbage, emitResult, line, mark, nowMs, round } from "./harness.ts";
import { startRelayProcess } from "./processes.ts";

const DIRECT_MESSAGES = 1000;
const GROUP_MEMBERS = 20;
const GROUP_MESSAGES = 100;
/** Untimed messages first (as the floor gets untimed rounds), so optimised code is measured. */
const DIRECT_WARMUP = 200;
const GROUP_WARMUP = 20;
/** Sends in flight at once (as in the bot-host bench): enough to keep the pipeline full. */
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);

const base = mkdtempSync(join(tmpdir(), "pairwise-bench-e2e-"));
let homes = 0;
const relay = await startRelayProcess(join(base, "server"));
const server = { url: relay.url, publicKey: relay.publicKey };

async function device(account: string, primary?: PairwiseDevice): Promise<PairwiseDevice> {
  const d = PairwiseDevice.open({ home: join(base, `d${homes++}`), timeoutMs: 30_000 });
  d.deliveryReceipts = false; // the figures are for messages, not their receipts
  if (!primary) {
    await d.register({ server, accountId: account });
    return d;
  }
  let code: string | undefined;
  const linked = linkAsCompanion(d, {
    server,
    deviceName: "bench",
    timeoutMs: 30_000,
    onLinkCode: (u) => (code ??= u),
  });
  while (code === undefined) await new Promise((r) => setTimeout(r, 5));
  await approveLink(primary, code, () => Promise.resolve(true), { historySync: false });
  await linked;
  return d;
}

/** Waits until every device has received `n` messages. */
function counter(devices: PairwiseDevice[]) {
  const counts = new Map(devices.map((d) => [d, 0]));
  for (const d of devices) d.on("message", () => counts.set(d, (counts.get(d) ?? 0) + 1));
  return {
    reset: () => counts.forEach((_, d) => counts.set(d, 0)),
    until: async (n: number) => {
      while ([...counts.values()].some((c) => c < n)) await new Promise((r) => setTimeout(r, 2));
    },
  };
}

async function parallel(total: number, fn: (i: number) => Promise<unknown>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < total) await fn(next++);
    }),
  );
}

// The floor: raw libsignal encrypt+decrypt pairs per second, in this same process.
/** CPU time of this process (all its threads), in microseconds. */
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
/** CPU time per floor pair of each floor run (for the diagnostic line at the end). */
const floorCpuUs: number[] = [];
async function measureFloor(): Promise<number> {
  const floorRound = await rawFloor();
  for (let i = 0; i < 300; i++) await floorRound();
  collectGarbage();
  const begin = nowMs();
  const cpu = cpuUs();
  const FLOOR = 2000;
  for (let i = 0; i < FLOOR; i++) await floorRound();
  floorCpuUs.push((cpuUs() - cpu) / FLOOR);
  return FLOOR / ((nowMs() - begin) / 1000);
}
const floorBefore = await measureFloor();

// 1:1 — Alice's primary sends; Bob's 3 devices and Alice's companion each get a copy.
const alice = await device("alice");
const alice2 = await device("alice", alice);
const bob = await device("bob");
const bobs = [bob, await device("bob", bob), await device("bob", bob)];
const directReceivers = [...bobs, alice2];
for (const d of [alice, ...directReceivers]) await d.startReceiving();
const direct = counter(directReceivers);
await parallel(DIRECT_WARMUP, (i) => alice.sendText("bob", `warm-up ${i}`));
await direct.until(DIRECT_WARMUP);
// Each receiving device answers once, as in a conversation (and as the floor's session is
// answered once): libsignal then has every session confirmed and sends plain ratchet messages,
// not prekey messages that repeat the session's PQXDH setup, as it does to a device that never
// wrote back.
const aliceReplies = counter([alice]);
for (const d of directReceivers) await d.sendText(d === alice2 ? "bob" : "alice", "reply");
await aliceReplies.until(directReceivers.length);
await direct.until(DIRECT_WARMUP + 3); // each got 3 replies or their sync copies
direct.reset();
collectGarbage();
mark("direct");
let start = nowMs();
let cpu = cpuUs();
await parallel(DIRECT_MESSAGES, (i) => alice.sendText("bob", `message ${i}`));
await direct.until(DIRECT_MESSAGES);
mark("direct-end");
const directSeconds = (nowMs() - start) / 1000;
const directCpuUs = cpuUs() - cpu;
const directPerS = DIRECT_MESSAGES / directSeconds;
const directCopies = DIRECT_MESSAGES * directReceivers.length;
const floorBetween = await measureFloor();

// Group — 20 members, 2 devices each; the first member's primary sends.
const members: PairwiseDevice[][] = [];
for (let m = 0; m < GROUP_MEMBERS; m++) {
  const primary = await device(`member${m}`);
  members.push([primary, await device(`member${m}`, primary)]);
}
const all = members.flat();
for (const d of all) await d.startReceiving();
const sender = members[0]![0]!;
const groupReceivers = all.filter((d) => d !== sender);
const group = await createGroup(
  sender,
  "bench",
  members.slice(1).map((_, i) => `member${i + 1}`),
);
const groupCount = counter(groupReceivers);
await sendGroupText(sender, group.id, "warm-up"); // distributes the sender key once
await parallel(GROUP_WARMUP - 1, (i) => sendGroupText(sender, group.id, `warm-up ${i}`));
await groupCount.until(GROUP_WARMUP);
groupCount.reset();
collectGarbage();
mark("group");
start = nowMs();
cpu = cpuUs();
await parallel(GROUP_MESSAGES, (i) => sendGroupText(sender, group.id, `group ${i}`));
await groupCount.until(GROUP_MESSAGES);
mark("group-end");
const groupSeconds = (nowMs() - start) / 1000;
const groupCpuUs = cpuUs() - cpu;
const groupPerS = GROUP_MESSAGES / groupSeconds;
const groupCopies = GROUP_MESSAGES * groupReceivers.length;

const floorAfter = await measureFloor();
// Each phase is set against the floor measured just before and just after it, weighted by the
// phase's length, so a change in the machine's speed during the run favours neither side.
const floorDirect = (floorBefore + floorBetween) / 2;
const floorGroup = (floorBetween + floorAfter) / 2;
const floorCopiesPerS =
  (floorDirect * directSeconds + floorGroup * groupSeconds) / (directSeconds + groupSeconds);

const deviceCopiesPerS = (directCopies + groupCopies) / (directSeconds + groupSeconds);
const ratio = deviceCopiesPerS / floorCopiesPerS;
line("1:1 alice(2) -> bob(3)", directPerS, "messages/s");
line(`group of ${GROUP_MEMBERS} (2 devices each)`, groupPerS, "messages/s");
line("device copies delivered and decrypted", deviceCopiesPerS, "/s");
line(
  "floor before / between / after phases",
  [floorBefore, floorBetween, floorAfter].map((x) => Math.round(x)).join(" / "),
  "pairs/s",
);
line("floor: raw libsignal encrypt+decrypt", floorCopiesPerS, "pairs/s (time-weighted)");
line("ratio copies / floor (target >= 0.5)", ratio);
// A diagnostic, steadier than wall time on a machine whose speed drifts: the same comparison in
// CPU time of this process (all devices run here; the relay's own CPU is not counted).
const floorCpu = floorCpuUs.reduce((a, b) => a + b, 0) / floorCpuUs.length;
line(
  "CPU per copy: direct / group / floor pair",
  [directCpuUs / directCopies, groupCpuUs / groupCopies, floorCpu]
    .map((x) => Math.round(x))
    .join(" / "),
  "µs (diagnostic)",
);
line(
  "CPU ratio floor pair / copy (diagnostic)",
  (floorCpu * (directCopies + groupCopies)) / (directCpuUs + groupCpuUs),
);

for (const d of [alice, ...directReceivers, ...all]) await d.close();
relay.child.kill("SIGTERM");
await new Promise((r) => relay.child.once("exit", r));
rmSync(base, { recursive: true, force: true });
emitResult({
  bench: "e2e",
  direct_per_s: round(directPerS, 1),
  group_per_s: round(groupPerS, 1),
  device_copies_per_s: round(deviceCopiesPerS, 1),
  floor_copies_per_s: round(floorCopiesPerS, 1),
  ratio: round(ratio, 3),
});
