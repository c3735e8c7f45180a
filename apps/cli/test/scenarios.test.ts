// The multi-device scenarios of issue #5, each step a real `pairwise` process with its own
// --home, against one real `pairwise-server` process on loopback. Alice has a primary (a1) and
// two companions (a2, a3), Bob two devices (b1, b2), Carol one (c1); later scenarios add their
// own accounts. Every `receive --json` result is compared in full, so a message that is
// missing, misaddressed or shown twice fails the step it belongs to.
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  freshHome,
  jsonLines,
  removeHomes,
  runCli,
  spawnCli,
  type CliExit,
} from "./fixtures/cli-process.ts";
import { deleteSessionRows } from "./fixtures/device-db.ts";
import { startServerProcess, type ServerProcess } from "./fixtures/server-process.ts";

const HOMES = ["a1", "a2", "a3", "b1", "b2", "c1", "nora", "omar", "kim", "lee"] as const;
type Who = (typeof HOMES)[number];
const homes = Object.fromEntries(HOMES.map((h) => [h, freshHome(h)])) as Record<Who, string>;

let server: ServerProcess;

/** `pairwise --home <who> --timeout 20 args...`, killed after `lifetimeMs`. */
const as = (who: Who, args: string[], lifetimeMs = 90_000) =>
  runCli(["--home", homes[who], "--timeout", "20", ...args], lifetimeMs);

/**
 * Expects exit 0 and nothing on stderr but warnings matching `allowed` (for instance receipts
 * a since-unlinked device sent before it was unlinked, which arrive late and are dropped).
 */
function ok(run: CliExit, allowed: RegExp[] = []): CliExit {
  const unexpected = run.stderr
    .split("\n")
    .filter((l) => l !== "" && !allowed.some((re) => re.test(l)));
  expect({ code: run.code, stderr: unexpected }).toEqual({ code: 0, stderr: [] });
  return run;
}

const json = (run: CliExit, allowed: RegExp[] = []): unknown => JSON.parse(ok(run, allowed).stdout);

/** A message as `receive --json` prints it, without its timestamp. */
interface Msg {
  id: string;
  from: string;
  fromDevice: number;
  to: string;
  text: string;
  sync: boolean;
  file?: string;
}

const byId = (a: Msg, b: Msg) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** The JSON lines of a `receive --json` run, sorted by id (`file` kept only when asked). */
function received(run: CliExit, allowed: RegExp[] = [], keepFile = false): Msg[] {
  return jsonLines(ok(run, allowed).stdout)
    .map((line) => {
      const { id, from, fromDevice, to, text, sync, file, timestamp } = line as Msg & {
        timestamp: unknown;
      };
      expect(typeof timestamp).toBe("number");
      return { id, from, fromDevice, to, text, sync, ...(keepFile ? { file } : {}) };
    })
    .sort(byId);
}

const msg = (
  id: string,
  from: string,
  fromDevice: number,
  to: string,
  text: string,
  sync = false,
): Msg => ({ id, from, fromDevice, to, text, sync });

/** `send TO TEXT --json` from `who`; returns the message id. */
async function send(who: Who, to: string, text: string): Promise<string> {
  const { id } = json(await as(who, ["send", to, text, "--json"])) as { id: string };
  expect(id).toMatch(/^[\w-]{8,}$/);
  return id;
}

/** `receive --json` on several devices at once. */
function receiveAll<T extends Who[]>(...who: T): Promise<{ [K in keyof T]: CliExit }> {
  return Promise.all(who.map((w) => as(w, ["receive", "--json"]))) as Promise<{
    [K in keyof T]: CliExit;
  }>;
}

async function safetyCode(who: Who, name: string, allowed: RegExp[] = []): Promise<string> {
  const { code } = json(await as(who, ["safety-code", name, "--json"]), allowed) as {
    code: string;
  };
  expect(code).toMatch(/^(\d{5} ){11}\d{5}$/);
  return code;
}

/** Links the fresh home `companion` to `primary`'s account; returns the new device id. */
async function link(primary: Who, companion: Who, name: string): Promise<number> {
  const code = spawnCli(
    [
      "--home",
      homes[companion],
      "--timeout",
      "60",
      "link-code",
      "--server",
      server.url,
      "--device-name",
      name,
      "--json",
    ],
    120_000,
  );
  const uri = await code.firstLine;
  const { device } = json(await as(primary, ["link", uri, "--yes", "--json"])) as {
    device: number;
  };
  const done = ok(await code.exited);
  expect(JSON.parse(done.stdout.trim().split("\n").at(-1) ?? "")).toMatchObject({
    linked: true,
    device,
  });
  return device;
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Receipts that the unlinked a3 sent before it was unlinked may reach Bob late: dropped. */
const LATE_FROM_A3 = /^pairwise: warning: dropped a message from alice#3: not a verified device$/;

beforeAll(async () => {
  server = await startServerProcess();
}, 30_000);
afterAll(async () => {
  await server.stop();
  removeHomes();
});

describe("issue #5 scenarios with real pairwise processes and a real relay process", () => {
  // Messages sent before any companion exists (history sync brings them to the companions).
  const early = { toBob: "", toAlice: "" };
  // Security codes before linking.
  const codes = { aliceForBob: "", aliceForCarol: "" };
  let group = "";

  it("registers alice, bob and carol; alice and bob talk before any companion exists", async () => {
    const regs = await Promise.all(
      (
        [
          ["a1", "alice"],
          ["b1", "bob"],
          ["c1", "carol"],
        ] as const
      ).map(([who, name]) =>
        as(who, ["register", "--server", server.url, "--name", name, "--json"]),
      ),
    );
    expect(regs.map((r) => json(r))).toEqual([
      { account: "alice", device: 1 },
      { account: "bob", device: 1 },
      { account: "carol", device: 1 },
    ]);
    early.toBob = await send("a1", "bob", "before the companions");
    early.toAlice = await send("b1", "alice", "reply before the companions");
    const [a1, b1] = await receiveAll("a1", "b1");
    expect(received(a1)).toEqual([
      msg(early.toAlice, "bob", 1, "alice", "reply before the companions"),
    ]);
    expect(received(b1)).toEqual([msg(early.toBob, "alice", 1, "bob", "before the companions")]);
    [codes.aliceForBob, codes.aliceForCarol] = await Promise.all([
      safetyCode("b1", "alice"),
      safetyCode("c1", "alice"),
    ]);
    expect(await safetyCode("a1", "bob")).toBe(codes.aliceForBob);
  }, 120_000);

  it("links two companions to alice and one to bob; each new companion gets the earlier messages (history sync)", async () => {
    const [aliceIds, bobId] = await Promise.all([
      (async () => [await link("a1", "a2", "laptop"), await link("a1", "a3", "tablet")])(),
      link("b1", "b2", "desktop"),
    ]);
    expect([aliceIds, bobId]).toEqual([[2, 3], 2]);
    // The first receive imports the history; imported messages go to history, not stdout.
    const first = await receiveAll("a2", "a3", "b2");
    for (const run of first) expect(received(run)).toEqual([]);
    const histories = await Promise.all(
      (["a2", "a3", "b2"] as const).map((w) =>
        as(w, ["history", w === "b2" ? "alice" : "bob", "--json"]),
      ),
    );
    const earlier = [
      { id: early.toBob, from: "alice", to: "bob", text: "before the companions" },
      { id: early.toAlice, from: "bob", to: "alice", text: "reply before the companions" },
    ];
    for (const h of histories) {
      const rows = (json(h) as Msg[]).map(({ id, from, to, text }) => ({ id, from, to, text }));
      expect(rows).toEqual(earlier);
    }
    const devices = json(await as("a1", ["devices", "--json"])) as Array<{ id: number }>;
    expect(devices.map((d) => d.id)).toEqual([1, 2, 3]);
  }, 150_000);

  it("keeps the security codes when companions are linked", async () => {
    const after = await Promise.all([
      safetyCode("b1", "alice"),
      safetyCode("b2", "alice"),
      safetyCode("a2", "bob"),
      safetyCode("a3", "bob"),
      safetyCode("c1", "alice"),
    ]);
    expect(after).toEqual([
      codes.aliceForBob,
      codes.aliceForBob,
      codes.aliceForBob,
      codes.aliceForBob,
      codes.aliceForCarol,
    ]);
  }, 90_000);

  it("delivers every message to every intended device exactly once, with sync copies to the sender's other devices", async () => {
    const [m1, m2, m3, m4, m5, m6] = await Promise.all([
      send("a1", "bob", "m1 alice#1 to bob"),
      send("a2", "bob", "m2 alice#2 to bob"),
      send("a3", "carol", "m3 alice#3 to carol"),
      send("b2", "alice", "m4 bob#2 to alice"),
      send("c1", "alice", "m5 carol to alice"),
      send("b1", "carol", "m6 bob#1 to carol"),
    ]);
    const M1 = msg(m1, "alice", 1, "bob", "m1 alice#1 to bob");
    const M2 = msg(m2, "alice", 2, "bob", "m2 alice#2 to bob");
    const M3 = msg(m3, "alice", 3, "carol", "m3 alice#3 to carol");
    const M4 = msg(m4, "bob", 2, "alice", "m4 bob#2 to alice");
    const M5 = msg(m5, "carol", 1, "alice", "m5 carol to alice");
    const M6 = msg(m6, "bob", 1, "carol", "m6 bob#1 to carol");
    const synced = (m: Msg) => ({ ...m, sync: true });
    const runs = await receiveAll("a1", "a2", "a3", "b1", "b2", "c1");
    const got = runs.map((r) => received(r));
    const want = [
      [synced(M2), synced(M3), M4, M5], // a1
      [synced(M1), synced(M3), M4, M5], // a2
      [synced(M1), synced(M2), M4, M5], // a3
      [M1, M2, synced(M4)], // b1
      [M1, M2, synced(M6)], // b2
      [M3, M6], // c1
    ].map((list) => [...list].sort(byId));
    expect(got).toEqual(want);
    // Everything was acknowledged once stored: nothing comes a second time.
    const again = await receiveAll("a1", "a2", "a3", "b1", "b2", "c1");
    expect(again.map((r) => received(r))).toEqual([[], [], [], [], [], []]);
  }, 150_000);

  it("unlinking a3 stops delivery to it, and it can no longer connect", async () => {
    expect(json(await as("a1", ["unlink", "3", "--json"]))).toEqual({ unlinked: 3 });
    const [u1, u2] = await Promise.all([
      send("b1", "alice", "u1 after the unlink"),
      send("a1", "bob", "u2 after the unlink"),
    ]);
    const U1 = msg(u1, "bob", 1, "alice", "u1 after the unlink");
    const U2 = msg(u2, "alice", 1, "bob", "u2 after the unlink");
    const [a1, a2, b1, b2, a3] = await receiveAll("a1", "a2", "b1", "b2", "a3");
    expect(received(a1)).toEqual([U1]);
    expect(received(a2)).toEqual([U1, { ...U2, sync: true }].sort(byId));
    expect(received(b1, [LATE_FROM_A3])).toEqual([U2]);
    expect(received(b2, [LATE_FROM_A3])).toEqual([U2, { ...U1, sync: true }].sort(byId));
    expect(a3.code).toBe(1);
    expect(a3.stdout).toBe("");
    expect(a3.stderr).toMatch(/^pairwise: .*no longer.*\n$/);
    const sendFromA3 = await as("a3", ["send", "bob", "still here?"]);
    expect(sendFromA3.code).toBe(1);
    expect(sendFromA3.stderr).toMatch(/^pairwise: .*no longer.*\n$/);
    const devices = json(await as("a1", ["devices", "--json"])) as Array<{ id: number }>;
    expect(devices.map((d) => d.id)).toEqual([1, 2]);
  }, 120_000);

  it("a group rotates sender keys when a member is removed: the removed member reads nothing after it, the rest read on", async () => {
    ({ group } = json(await as("a1", ["group", "create", "friends", "bob", "carol", "--json"])) as {
      group: string;
    });
    const to = `group:${group}`;
    const g1 = await send("a1", to, "g1 from alice#1");
    const g2 = await send("b1", to, "g2 from bob#1");
    const G1 = msg(g1, "alice", 1, to, "g1 from alice#1");
    const G2 = msg(g2, "bob", 1, to, "g2 from bob#1");
    const before = await receiveAll("a1", "a2", "b1", "b2", "c1");
    expect(before.map((r) => received(r, [LATE_FROM_A3]))).toEqual(
      [[G2], [{ ...G1, sync: true }, G2], [G1], [G1, { ...G2, sync: true }], [G1, G2]].map((l) =>
        [...l].sort(byId),
      ),
    );

    const removed = json(await as("a1", ["group", "remove", group, "carol", "--json"])) as {
      members: string[];
    };
    expect([...removed.members].sort()).toEqual(["alice", "bob"]);
    const g3 = await send("a1", to, "g3 from alice#1 after the removal");
    const g4 = await send("b1", to, "g4 from bob#1 after the removal");
    const g5 = await send("a2", to, "g5 from alice#2 after the removal");
    const G3 = msg(g3, "alice", 1, to, "g3 from alice#1 after the removal");
    const G4 = msg(g4, "bob", 1, to, "g4 from bob#1 after the removal");
    const G5 = msg(g5, "alice", 2, to, "g5 from alice#2 after the removal");
    const sync = (m: Msg) => ({ ...m, sync: true });
    const after = await receiveAll("a1", "a2", "b1", "b2", "c1");
    expect(after.map((r) => received(r, [LATE_FROM_A3]))).toEqual(
      [
        [G4, sync(G5)], // a1
        [sync(G3), G4], // a2
        [G3, G5], // b1
        [G3, sync(G4), G5], // b2
        [], // c1: removed
      ].map((l) => [...l].sort(byId)),
    );
    const carolHistory = json(await as("c1", ["history", to, "--json"])) as Msg[];
    expect(carolHistory.map((m) => m.id).sort()).toEqual([g1, g2].sort());
  }, 150_000);

  it("security codes change when an account registers anew (delete-account, register, trust)", async () => {
    const companion = await as("a2", ["delete-account", "--yes"]);
    expect([companion.code, companion.stderr]).toEqual([
      1,
      "pairwise: only the primary device (device 1) can delete the account\n",
    ]);
    expect(json(await as("c1", ["delete-account", "--yes", "--json"]))).toEqual({
      deleted: "carol",
    });
    // The home holds no device any more; the name is free: carol registers anew there.
    const gone = await as("c1", ["receive"]);
    expect([gone.code, gone.stderr]).toEqual([1, expect.stringMatching(/no registered device/)]);
    expect(
      json(await as("c1", ["register", "--server", server.url, "--name", "carol", "--json"])),
    ).toEqual({ account: "carol", device: 1 });

    const changed = /^pairwise: warning: the security code of carol changed/;
    const stale = await safetyCode("a1", "carol", [changed]);
    const warned = await as("a1", ["safety-code", "carol"]);
    expect(warned.stderr).toMatch(changed);
    // Sending to the new key fails closed until it is accepted.
    const refused = await as("a1", ["send", "carol", "are you still you?"]);
    expect(refused.code).toBe(1);
    expect(json(await as("a1", ["trust", "carol", "--json"]))).toEqual({ trusted: "carol" });
    expect(stale).toBe(codes.aliceForCarol);
    const fresh = await safetyCode("a1", "carol");
    expect(fresh).not.toBe(stale);
    expect(await safetyCode("c1", "alice")).toBe(fresh);
    expect(codes.aliceForCarol).not.toBe(fresh);
    // Nothing is pending any more; alice and the new carol talk.
    expect((await as("a1", ["trust", "carol"])).code).toBe(1);
    // Every device decides on its own: alice's laptop and bob's devices knew the old key too.
    const trusts = await Promise.all(
      (["a2", "b1", "b2"] as const).map((w) => as(w, ["trust", "carol"])),
    );
    for (const run of trusts) ok(run, [LATE_FROM_A3]);
    const hi = await send("a1", "carol", "welcome back");
    const [c1, a2] = await receiveAll("c1", "a2");
    expect(received(c1)).toEqual([msg(hi, "alice", 1, "carol", "welcome back")]);
    expect(received(a2)).toEqual([msg(hi, "alice", 1, "carol", "welcome back", true)]);
  }, 150_000);

  it("a 10 MB file arrives byte-identical on every device of the recipient and as a sync copy", async () => {
    const bytes = randomBytes(10 * 1024 * 1024);
    const path = join(dirname(homes.a1), "ten-megabytes.bin");
    writeFileSync(path, bytes);
    const { id } = json(await as("a1", ["send-file", "bob", path, "--json"], 150_000)) as {
      id: string;
    };
    const runs = await Promise.all(
      (["b1", "b2", "a2"] as const).map((w) => as(w, ["receive", "--json"], 150_000)),
    );
    for (const [i, run] of runs.entries()) {
      const got = received(run, [LATE_FROM_A3], true);
      expect(got.map(({ id: gotId, from, to, sync }) => ({ id: gotId, from, to, sync }))).toEqual([
        { id, from: "alice", to: "bob", sync: i === 2 },
      ]);
      const saved = readFileSync(String(got[0]?.file));
      expect(saved.length).toBe(bytes.length);
      expect(sha256(saved)).toBe(sha256(bytes));
    }
  }, 180_000);

  it("a recipient offline while others send receives everything later, once", async () => {
    // Carol runs no process while alice's and bob's devices send, one of them a burst from a pipe.
    const [o1, o2, o3] = await Promise.all([
      send("a1", "carol", "o1 while carol is offline"),
      send("a2", "carol", "o2 while carol is offline"),
      send("b2", "carol", "o3 while carol is offline"),
    ]);
    const burst = ["o4 burst", "o5 burst", "o6 burst"];
    const chat = await spawnCli(
      ["--home", homes.b1, "--timeout", "20", "chat", "carol"],
      90_000,
      `${burst.join("\n")}\n/quit\n`,
    ).exited;
    ok(chat, [LATE_FROM_A3]);
    const sentByB1 = (json(await as("b1", ["history", "carol", "--json"])) as Msg[]).filter((m) =>
      burst.includes(m.text),
    );
    expect(sentByB1.map((m) => m.text)).toEqual(burst);
    const want = [
      msg(o1, "alice", 1, "carol", "o1 while carol is offline"),
      msg(o2, "alice", 2, "carol", "o2 while carol is offline"),
      msg(o3, "bob", 2, "carol", "o3 while carol is offline"),
      ...sentByB1.map((m) => msg(m.id, "bob", 1, "carol", m.text)),
    ].sort(byId);
    expect(received(await as("c1", ["receive", "--json"]))).toEqual(want);
    expect(received(await as("c1", ["receive", "--json"]))).toEqual([]);
  }, 150_000);

  it("a deliberately broken session recovers through a retry receipt", async () => {
    await Promise.all(
      (["nora", "omar"] as const).map((w) =>
        as(w, ["register", "--server", server.url, "--name", w]).then((r) => ok(r)),
      ),
    );
    const before = await send("nora", "omar", "before the break");
    expect(received(await as("omar", ["receive", "--json"]))).toEqual([
      msg(before, "nora", 1, "omar", "before the break"),
    ]);
    const reply = await send("omar", "nora", "reply");
    expect(received(await as("nora", ["receive", "--json"]))).toEqual([
      msg(reply, "omar", 1, "nora", "reply"),
    ]);
    // Break omar's side between two runs: he forgets his session with nora's device, so her
    // next ratchet message cannot be decrypted.
    expect(deleteSessionRows(homes.omar, "nora", 1)).toBe(1);
    const broken = await send("nora", "omar", "after the break");
    const failed = await as("omar", ["receive", "--json"]);
    const cannot = /^pairwise: warning: could not decrypt a message from nora#1 \(\w+\)$/;
    expect(received(failed, [cannot])).toEqual([]);
    expect(failed.stderr).toMatch(/could not decrypt a message from nora#1/);
    // Nora answers the retry receipt from her outbox (nothing to show), then omar has it.
    expect(received(await as("nora", ["receive", "--json"]))).toEqual([]);
    const recovered = await as("omar", ["receive", "--json"]);
    expect(received(recovered, [cannot])).toEqual([
      msg(broken, "nora", 1, "omar", "after the break"),
    ]);
    // Both directions work on the new session, and the message is stored once.
    const good = await send("omar", "nora", "all good");
    expect(received(await as("nora", ["receive", "--json"]))).toEqual([
      msg(good, "omar", 1, "nora", "all good"),
    ]);
    const history = json(await as("omar", ["history", "nora", "--json"])) as Msg[];
    expect(history.filter((m) => m.id === broken)).toHaveLength(1);
  }, 150_000);

  it("a receive killed (SIGKILL) mid-burst loses nothing and shows nothing twice after restart", async () => {
    await Promise.all(
      (["kim", "lee"] as const).map((w) =>
        as(w, ["register", "--server", server.url, "--name", w]).then((r) => ok(r)),
      ),
    );
    const N = 120;
    const texts = Array.from({ length: N }, (_, i) => `burst ${String(i)}`);
    ok(
      await spawnCli(
        ["--home", homes.kim, "--timeout", "20", "chat", "lee"],
        120_000,
        `${texts.join("\n")}\n/quit\n`,
      ).exited,
    );
    const sent = json(await as("kim", ["history", "lee", "--json"])) as Msg[];
    expect(sent.map((m) => m.text)).toEqual(texts);
    const ids = sent.map((m) => m.id);

    // Lee receives the queued burst; the process is killed once `killAt` messages have shown
    // (a different point in the burst from run to run).
    const killAt = 1 + Math.floor(Math.random() * 40);
    const listening = spawnCli(
      ["--home", homes.lee, "--timeout", "20", "receive", "--json", "--wait", "60"],
      120_000,
    );
    let out = "";
    listening.child.stdout?.setEncoding("utf8").on("data", (c: string) => {
      out += c;
      if (out.split("\n").length > killAt) listening.child.kill("SIGKILL");
    });
    const killed = await listening.exited;
    expect(killed.code).toBeNull(); // ended by the signal
    const shownFirst = jsonLines(killed.stdout.slice(0, killed.stdout.lastIndexOf("\n") + 1)).map(
      (m) => (m as Msg).id,
    );
    expect(shownFirst.length).toBeGreaterThanOrEqual(killAt);
    expect(shownFirst.length).toBeLessThan(N);

    const rest = received(await as("lee", ["receive", "--json"]));
    const shownLater = rest.map((m) => m.id);
    expect(rest.every((m) => m.from === "kim" && m.to === "lee" && !m.sync)).toBe(true);
    // Exactly the missing ones: together every id, each once. The one exception the design
    // admits (see `receive --help`): a kill landing between printing a line and recording it as
    // printed shows that single line — the last one the killed run printed — again after the
    // restart (in arrival order among the others the killed run had stored but not printed).
    const shown = [...shownFirst, ...shownLater];
    const again = shown.filter((id, i) => shown.indexOf(id) !== i);
    if (again.length > 0) expect(again).toEqual([shownFirst.at(-1)]);
    expect([...new Set(shown)].sort()).toEqual([...ids].sort());
    expect(shown.length).toBe(N + again.length);
    // The history holds each once, in the order kim sent them.
    const history = json(await as("lee", ["history", "kim", "--json"])) as Msg[];
    expect(history.map((m) => m.id)).toEqual(ids);
    expect(received(await as("lee", ["receive", "--json"]))).toEqual([]);
  }, 180_000);
});
