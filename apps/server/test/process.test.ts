// The real `pairwise-server` program as a child process: its startup line, usage errors, config
// sources and their precedence, graceful shutdown on SIGTERM, and a SIGKILL in the middle of a
// burst of real end-to-end encrypted submissions (every acknowledged message survives, nothing
// is delivered twice).
import { randomInt } from "node:crypto";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { ClientError, expectResult } from "@pairwise/client";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { RunningServer } from "../src/internal/server.ts";
import {
  LISTENING,
  freePort,
  runServerToExit,
  startServerProcess,
  type ServerProcess,
} from "./fixtures/server-process.ts";
import { createTextSender, decryptText, type SubmitMessageInit } from "./fixtures/text-sender.ts";
import { TestDevice, connect, tempDir } from "./support.ts";

const dirs: string[] = [];
const tmp = (): string => {
  const d = tempDir("pairwise-server-process-");
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const running = new Set<ServerProcess>();
async function start(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<ServerProcess> {
  const p = await startServerProcess(args, { env });
  running.add(p);
  void p.exited.then(() => running.delete(p));
  return p;
}
afterEach(async () => {
  await Promise.all([...running].map((p) => p.stop("SIGKILL")));
});

/** TestDevice's helpers take a RunningServer but use only its URL and Noise public key. */
const endpoint = (p: ServerProcess): RunningServer =>
  ({ url: p.url, publicKey: p.publicKey }) as unknown as RunningServer;

const serverCode = async (p: Promise<unknown>): Promise<string | undefined> => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(ClientError.is(err, "ServerRefused"), String(err)).toBe(true);
  return (err as ClientError).serverCode;
};

const localArgs = (data: string) => ["--data", data, "--host", "127.0.0.1", "--port", "0"];

describe("pairwise-server process", () => {
  it("prints exactly one line, `listening on ws://127.0.0.1:<port>`, and answers /healthz", async () => {
    const data = tmp();
    const p = await start(localArgs(data));
    expect(p.port).toBeGreaterThan(0);
    const health = await fetch(`http://127.0.0.1:${p.port}/healthz`, {
      signal: AbortSignal.timeout(5000),
    });
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: "ok", connections: 0 });
    const exit = await p.stop("SIGTERM");
    expect(exit.code).toBe(0);
    expect(exit.stdout).toBe(`listening on ws://127.0.0.1:${p.port}\n`);
    expect(LISTENING.test(exit.stdout.trimEnd())).toBe(true);
    expect(existsSync(join(data, "relay.db"))).toBe(true);
  }, 30_000);

  it("exits 2 with one clear line on stderr for usage and config errors", async () => {
    const dir = tmp();
    const file = (name: string, text: string) => {
      const path = join(dir, name);
      writeFileSync(path, text);
      return path;
    };
    const data = join(dir, "data"); // never created: every case fails before the store opens
    const cases: Array<{ args: string[]; env?: Record<string, string>; line: RegExp }> = [
      { args: ["--bogus"], line: /^pairwise-server: Unknown option '--bogus'/ },
      { args: ["--port", "abc"], line: /^pairwise-server: --port must be a number$/ },
      { args: ["--port", "70000"], line: /^pairwise-server: invalid configuration: port: / },
      {
        args: ["--config", file("negative.json", JSON.stringify({ maxCompanions: -1 }))],
        line: /^pairwise-server: invalid configuration: maxCompanions: /,
      },
      {
        args: ["--config", file("unknown.yaml", "bogusSetting: 1\n")],
        line: /^pairwise-server: invalid configuration: .*bogusSetting/,
      },
      {
        args: ["--config", file("broken.json", "{ not json")],
        line: /^pairwise-server: config file .*broken\.json is not valid JSON$/,
      },
      {
        args: ["--config", join(dir, "missing.json")],
        line: /^pairwise-server: cannot read config file .*missing\.json$/,
      },
      {
        args: [],
        env: { PAIRWISE_SERVER_PORT: "abc" },
        line: /^pairwise-server: invalid configuration: port: /,
      },
    ];
    // Two at a time: each is a Node process starting up, and the machine may be busy.
    const exits: Awaited<ReturnType<typeof runServerToExit>>[] = [];
    for (let i = 0; i < cases.length; i += 2) {
      exits.push(
        ...(await Promise.all(
          cases.slice(i, i + 2).map((c) =>
            runServerToExit(["--data", data, ...c.args], {
              timeoutMs: 60_000,
              ...(c.env ? { env: c.env } : {}),
            }),
          ),
        )),
      );
    }
    for (const [i, exit] of exits.entries()) {
      const c = cases[i]!;
      expect(exit.code, `${c.args.join(" ")}: ${exit.stderr}`).toBe(2);
      expect(exit.stdout).toBe("");
      // The message is one line; flag errors (parseArgs) follow it with the usage text.
      const lines = exit.stderr.trimEnd().split("\n");
      const usageAt = lines.findIndex((l) => l.startsWith("usage: pairwise-server"));
      expect(usageAt === -1 ? lines.length : usageAt, exit.stderr).toBe(1);
      expect(lines[0]).toMatch(c.line);
      expect(exit.stderr).not.toMatch(/^\s+at /m); // no stack trace
    }
    expect(existsSync(data)).toBe(false);
  }, 240_000);

  it("takes settings from a JSON file, a YAML file and the environment; flags win over env over file", async () => {
    const dir = tmp();
    const [pA, pB, pC] = [await freePort(), await freePort(), await freePort()];
    // JSON file alone: port, data dir, silent logs and a limit of one companion take effect.
    const d1 = join(dir, "json-data");
    const json = join(dir, "server.json");
    writeFileSync(
      json,
      JSON.stringify({
        dataDir: d1,
        host: "127.0.0.1",
        port: pA,
        logLevel: "silent",
        maxCompanions: 1,
      }),
    );
    const fromJson = await start(["--config", json]);
    expect(fromJson.port).toBe(pA);
    const alice = await TestDevice.register(endpoint(fromJson), "alice");
    await alice.conn.request({ case: "allocateCompanion", value: {} });
    expect(await serverCode(alice.conn.request({ case: "allocateCompanion", value: {} }))).toBe(
      "TooManyDevices",
    );
    const jsonExit = await fromJson.stop("SIGTERM");
    expect(jsonExit.code).toBe(0);
    expect(jsonExit.stderr).toBe(""); // logLevel: silent
    expect(existsSync(join(d1, "server-key.json"))).toBe(true);

    // YAML file under the environment: env's port, registration and log level win.
    const d2 = join(dir, "yaml-data");
    const yaml = join(dir, "server.yaml");
    writeFileSync(
      yaml,
      `dataDir: ${d2}\nhost: 127.0.0.1\nport: ${pA}\nregistration: open\nlogLevel: info\n`,
    );
    const fromYaml = await start(["--config", yaml], {
      PAIRWISE_SERVER_PORT: String(pB),
      PAIRWISE_SERVER_REGISTRATION: "invite",
      PAIRWISE_SERVER_LOG_LEVEL: "warn",
    });
    expect(fromYaml.port).toBe(pB);
    expect(await serverCode(TestDevice.register(endpoint(fromYaml), "bob"))).toBe("Unauthorized");
    const yamlExit = await fromYaml.stop("SIGTERM");
    expect(yamlExit.code).toBe(0);
    expect(yamlExit.stderr).not.toContain("relay listening"); // an info line: warn hides it
    expect(existsSync(join(d2, "server-key.json"))).toBe(true);

    // Flags over env over file.
    const [dFile, dEnv, dFlag] = ["file-data", "env-data", "flag-data"].map((n) => join(dir, n));
    const layered = join(dir, "layered.json");
    writeFileSync(layered, JSON.stringify({ dataDir: dFile, port: pA, logLevel: "info" }));
    const fromFlags = await start(["--config", layered, "--port", String(pC), "--data", dFlag!], {
      PAIRWISE_SERVER_PORT: String(pB),
      PAIRWISE_SERVER_DATA: dEnv!,
      PAIRWISE_SERVER_LOG_LEVEL: "silent",
    });
    expect(fromFlags.port).toBe(pC);
    const flagsExit = await fromFlags.stop("SIGTERM");
    expect(flagsExit.code).toBe(0);
    expect(flagsExit.stderr).toBe(""); // env's silent beat the file's info
    expect(existsSync(join(dFlag!, "server-key.json"))).toBe(true);
    expect(existsSync(dEnv!)).toBe(false);
    expect(existsSync(dFile!)).toBe(false);
  }, 60_000);

  it("shuts down gracefully on SIGTERM (exit 0) with the database intact for the next start", async () => {
    const data = tmp();
    const first = await start(localArgs(data));
    const alice = await TestDevice.register(endpoint(first), "alice");
    const exit = await first.stop("SIGTERM"); // alice is still connected
    expect(exit).toMatchObject({ code: 0, signal: null });
    await alice.conn.ended;
    const db = new Database(join(data, "relay.db"));
    try {
      expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
    } finally {
      db.close();
    }

    const second = await start(localArgs(data));
    expect(second.publicKey).toEqual(first.publicKey); // the key persists: pins still match
    const bob = await TestDevice.register(endpoint(second), "bob");
    const set = expectResult(
      await bob.conn.request({ case: "fetchDevices", value: { accountId: "alice" } }),
      "devices",
    );
    expect(set.accountKey).toEqual(alice.accountKey!.publicKey.serialize());
    expect(set.devices.map((d) => d.deviceId)).toEqual([1]);
    // Alice's Noise key still identifies her device.
    await alice.reconnect(endpoint(second));
    await alice.conn.request({ case: "startDelivery", value: {} });
    await alice.waitFor((ps) => ps.some((p) => p.kind.case === "queueEmpty"));
    expect((await second.stop("SIGTERM")).code).toBe(0);
  }, 30_000);
});

/** Submissions in the burst at most, and how many may be in flight at once. */
const BURST = 400;
const WINDOW = 8;

/** Two kill points in 50..250 acknowledged submits, never the same. */
const killPoints = (() => {
  const a = randomInt(50, 251);
  let b = randomInt(50, 251);
  while (b === a) b = randomInt(50, 251);
  return [a, b];
})();

describe("pairwise-server crash (SIGKILL mid-burst)", () => {
  for (const killAt of killPoints) {
    it(`delivers every acknowledged message exactly once after a SIGKILL at ${killAt} acks`, async () => {
      const data = tmp();
      const args = localArgs(data);
      const env = { PAIRWISE_SERVER_LOG_LEVEL: "warn" };
      const first = await start(args, env);
      const sender = await TestDevice.register(endpoint(first), "sender");
      const rcpt = await TestDevice.register(endpoint(first), "rcpt");
      const texts = await createTextSender(sender, "rcpt");
      const id = (i: number) => `burst-${String(i).padStart(4, "0")}`;

      // The burst: real ciphertexts, in order, up to WINDOW in flight; SIGKILL at the kill point.
      const attempted: SubmitMessageInit[] = [];
      const acked = new Set<string>();
      const inflight = new Set<Promise<void>>();
      const burst = { disconnected: false };
      for (let i = 0; i < BURST && !burst.disconnected; i++) {
        const submission = await texts.encrypt(`message ${i}`, id(i));
        attempted.push(submission);
        const p: Promise<void> = sender.conn
          .request({ case: "submitMessage", value: submission })
          .then(
            (r) => {
              if (r.case !== "submit") return;
              acked.add(submission.messageId);
              if (acked.size === killAt) first.child.kill("SIGKILL");
            },
            () => {
              burst.disconnected = true;
            },
          )
          .finally(() => inflight.delete(p));
        inflight.add(p);
        if (inflight.size >= WINDOW) await Promise.race(inflight);
      }
      await Promise.allSettled([...inflight]);
      const crash = await first.stop("SIGKILL");
      expect(crash.signal).toBe("SIGKILL");
      expect(acked.size).toBeGreaterThanOrEqual(killAt);
      console.log(
        `crash run: killed at ${killAt} acks; ${acked.size} acknowledged, ${attempted.length} attempted`,
      );

      // Restart on the same data dir; the recipient reconnects to the new URL.
      const second = await start(args, env);
      expect(second.publicKey).toEqual(first.publicKey);
      rcpt.pushes.length = 0;
      rcpt.conn = await connect(endpoint(second), rcpt.noiseKeys, rcpt.onPush);
      await rcpt.conn.request({ case: "startDelivery", value: {} });
      await rcpt.waitFor((ps) => ps.some((p) => p.kind.case === "queueEmpty"), 15_000);

      const order = new Map(attempted.map((s, i) => [s.messageId, i]));
      const received = rcpt.envelopes();
      const ids = received.map((e) => e.messageId);
      expect(new Set(ids).size).toBe(ids.length); // nothing twice
      for (const a of acked) expect(ids, `acknowledged ${a} lost`).toContain(a);
      const positions = ids.map((m) => order.get(m) ?? -1);
      expect(positions.every((p, i) => p >= 0 && (i === 0 || p > positions[i - 1]!))).toBe(true);
      for (const e of received) {
        const m = await decryptText(rcpt, e);
        expect(m).toEqual({
          messageId: e.messageId,
          text: `message ${order.get(e.messageId)}`,
          duplicate: false,
        });
      }
      await rcpt.conn.request({ case: "ack", value: { seqs: received.map((e) => e.seq) } });

      // The sender retries what it never saw acknowledged, with the same ids and ciphertexts
      // (the server may have stored some before the crash), plus two acknowledged ones, as a
      // client that lost its own record of the ack would: stored ones must not be stored again.
      sender.conn = await connect(endpoint(second), sender.noiseKeys, sender.onPush);
      const delivered = new Set(ids);
      const ackedInOrder = attempted.filter((a) => acked.has(a.messageId));
      const retries = [
        ackedInOrder[0]!,
        ackedInOrder.at(-1)!,
        ...attempted.filter((a) => !acked.has(a.messageId)),
      ];
      let duplicates = 0;
      for (const s of retries) {
        const r = expectResult(
          await sender.conn.request({ case: "submitMessage", value: s }),
          "submit",
        );
        expect(r.duplicate, s.messageId).toBe(delivered.has(s.messageId));
        if (r.duplicate) duplicates++;
      }
      console.log(
        `crash run: ${ids.length - acked.size} of ${attempted.length - acked.size} unacknowledged ` +
          `were stored before the kill; ${retries.length} retried, ${duplicates} refused as duplicates`,
      );
      await rcpt.waitFor(() => rcpt.envelopes().length >= attempted.length, 15_000);
      const all = rcpt.envelopes();
      expect(all.map((e) => e.messageId)).toEqual(attempted.map((s) => s.messageId));
      for (const e of all.slice(received.length)) {
        expect((await decryptText(rcpt, e)).text).toBe(`message ${order.get(e.messageId)}`);
      }
      await rcpt.conn.request({
        case: "ack",
        value: { seqs: all.slice(received.length).map((e) => e.seq) },
      });

      // Everything acknowledged: a fresh connection gets an empty queue.
      await rcpt.reconnect(endpoint(second));
      rcpt.pushes.length = 0;
      await rcpt.conn.request({ case: "startDelivery", value: {} });
      await rcpt.waitFor((ps) => ps.some((p) => p.kind.case === "queueEmpty"));
      expect(rcpt.envelopes()).toHaveLength(0);
      expect((await second.stop("SIGTERM")).code).toBe(0);
    }, 60_000);
  }
});
