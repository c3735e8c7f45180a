// Scheduled backups of a bot: config validation, a backup shortly after the bot is connected,
// "back up now" over the admin API, restorable with the recovery key byte for byte; a failing
// destination is logged (without secrets), shown on the dashboard and leaves no state behind.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { listBackups, restoreBackup, selectDeviceRecords } from "@pairwise/backup";
import { createFsProvider } from "@pairwise/backup/fs";
import type { PairwiseDevice } from "@pairwise/client";
import type { RunningServer } from "@pairwise/server";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BotHostError, parseConfig, startBotHost, type RunningBotHost } from "../src/index.ts";
import {
  ADMIN_TOKEN,
  account,
  botConfig,
  canonicalRecords,
  collectSink,
  customer,
  linkBot,
  startRelay,
  tempDir,
  until,
} from "./support.ts";

const base = {
  adminToken: "0123456789abcdef-token",
  bots: [{ name: "demo", server: "ws://127.0.0.1:8787", stateDir: "state/demo" }],
};
const withBackup = (backup: unknown) => ({
  ...base,
  bots: [{ ...base.bots[0], backup }],
});

function configError(raw: unknown): string {
  try {
    parseConfig(raw, "/srv/bots");
  } catch (err) {
    expect(BotHostError.is(err, "InvalidConfig")).toBe(true);
    return (err as Error).message;
  }
  throw new Error("expected InvalidConfig");
}

describe("backup config", () => {
  it("accepts fs and s3 destinations, resolving fs paths against the config file", () => {
    const fs = parseConfig(withBackup({ to: "fs:backups/demo", intervalMinutes: 60 }), "/srv/bots");
    expect(fs.bots[0]?.backup).toEqual({
      to: "fs:backups/demo",
      destination: { kind: "fs", dir: "/srv/bots/backups/demo" },
      intervalMinutes: 60,
    });
    const s3 = parseConfig(withBackup({ to: "s3://my-bucket/bots/demo", intervalMinutes: 1 }), "/");
    expect(s3.bots[0]?.backup?.destination).toEqual({
      kind: "s3",
      bucket: "my-bucket",
      prefix: "bots/demo/",
    });
    expect(parseConfig(base, "/").bots[0]?.backup).toBeUndefined();
  });

  it("names each bad field, without its value", () => {
    expect(configError(withBackup({ to: "ftp://secret-host/x", intervalMinutes: 5 }))).toMatch(
      /bots\.0\.backup\.to: expected fs:DIR or s3:\/\/BUCKET\/PREFIX/,
    );
    expect(
      configError(withBackup({ to: "ftp://secret-host/x", intervalMinutes: 5 })),
    ).not.toContain("secret-host");
    // Cloud drives need interactive credentials: not for a bot host.
    expect(configError(withBackup({ to: "gdrive", intervalMinutes: 5 }))).toMatch(/backup\.to/);
    expect(configError(withBackup({ to: "s3://X_bad/p", intervalMinutes: 5 }))).toMatch(
      /backup\.to/,
    );
    expect(configError(withBackup({ to: "fs:/b", intervalMinutes: 0 }))).toMatch(
      /backup\.intervalMinutes/,
    );
    expect(configError(withBackup({ to: "fs:/b", intervalMinutes: 1.5 }))).toMatch(
      /backup\.intervalMinutes: a whole number of minutes/,
    );
    expect(configError(withBackup({ to: "fs:/b" }))).toMatch(/backup\.intervalMinutes: Required/);
    expect(configError(withBackup({ to: "fs:/b", intervalMinutes: 5, key: "x" }))).toMatch(
      /backup: Unrecognized key/,
    );
    const twice = (to: string, other: string) => ({
      ...base,
      bots: [
        { ...base.bots[0], backup: { to, intervalMinutes: 5 } },
        { ...base.bots[0], name: "two", stateDir: "s2", backup: { to: other, intervalMinutes: 5 } },
      ],
    });
    expect(configError(twice("fs:/b/x", "fs:/b/x/"))).toMatch(
      /bots: each bot needs its own backup destination/,
    );
    expect(configError(twice("s3://bkt/p", "s3://bkt/p/"))).toMatch(/its own backup destination/);
    expect(parseConfig(twice("fs:/b/x", "fs:/b/y"), "/").bots).toHaveLength(2);
    expect(configError({ ...base, http: { publicOrigin: "localhost:80" } })).toMatch(
      /http\.publicOrigin/,
    );
  });
});

let server: RunningServer;
let owner: PairwiseDevice;
let host: RunningBotHost;
let logs = "";
const backupDir = tempDir("backups");
const blocked = join(tempDir("blocked"), "a-file");

const api = (path: string, method = "GET") =>
  fetch(`${host.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      ...(method === "POST" ? { "content-type": "application/json" } : {}),
    },
    ...(method === "POST" ? { body: "{}" } : {}),
  });

beforeAll(async () => {
  server = await startRelay();
  owner = await account(server, "shop");
  writeFileSync(blocked, "not a directory");
  const config = botConfig(server, [
    { name: "keeper", backup: { to: `fs:${backupDir}`, intervalMinutes: 60 } },
    // Under a regular file: every write fails.
    { name: "broken", backup: { to: `fs:${join(blocked, "sub")}`, intervalMinutes: 60 } },
  ]);
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs += chunk.toString("utf8");
      done();
    },
  });
  host = await startBotHost({
    config,
    logger: pino({ level: "debug" }, sink),
    backupStartDelayMs: 100,
  });
}, 120_000);

afterAll(async () => {
  await host.stop();
  await server.close();
});

describe("scheduled backups", () => {
  it("backs a bot up after it connects, and on demand; the backups restore byte for byte", async () => {
    await linkBot(host, "keeper", owner);
    const keeper = host.bot("keeper");
    // The first scheduled backup, shortly after connecting.
    await until(
      async () =>
        ((await (await api("/api/bots/keeper/backup")).json()) as { lastSequence?: number })
          .lastSequence === 1,
      60_000,
      "the first scheduled backup",
    );
    const first = await listBackups({ provider: createFsProvider({ dir: backupDir }) });
    expect(first.map((b) => [b.sequence, b.complete])).toEqual([[1, true]]);

    // History arrives, then "back up now".
    const c = await customer(server, "buyer");
    for (let i = 0; i < 5; i++) await c.device.sendText("shop", `order ${String(i)}`);
    await until(() => keeper.counters.received >= 5, 60_000, "the bot to receive");
    const store = keeper.linkedDevice()?.store;
    if (!store) throw new Error("not linked");
    await until(
      () => [...selectDeviceRecords(store)].filter((r) => r.key.startsWith("msg|")).length >= 5,
      30_000,
      "stored history",
    );
    const now = await api("/api/bots/keeper/backup/run", "POST");
    expect(now.status).toBe(200);
    const status = (await now.json()) as {
      lastSequence: number;
      lastAt: number;
      lastError?: string;
    };
    expect(status.lastSequence).toBe(2);
    expect(status.lastError).toBeUndefined();
    const expected = canonicalRecords(selectDeviceRecords(store));

    // Shown on the dashboard's API, and "back up now" needs a JSON POST with the admin token.
    const views = (await (await api("/api/bots")).json()) as Array<{
      name: string;
      backup?: { lastSequence?: number };
    }>;
    expect(views.find((v) => v.name === "keeper")?.backup?.lastSequence).toBe(2);
    expect((await fetch(`${host.url}/api/bots/keeper/backup/run`, { method: "POST" })).status).toBe(
      401,
    );
    expect((await api("/api/bots/keeper/backup/run", "GET")).status).toBe(405);

    // Restorable with the recovery key (revealed by an explicit admin action), byte for byte.
    const { recoveryKey } = (await (
      await api("/api/bots/keeper/backup/recovery-key", "POST")
    ).json()) as {
      recoveryKey: string;
    };
    expect(recoveryKey).toMatch(/^[0-9a-f]{4}( [0-9a-f]{4}){15}$/i);
    const sink = collectSink();
    const manifest = await restoreBackup({
      provider: createFsProvider({ dir: backupDir }),
      unlock: { recoveryKey },
      sink,
    });
    expect(manifest.sequence).toBe(2);
    expect(sink.committed).toBe(true);
    expect(canonicalRecords(sink.records)).toBe(expected);
    expect(sink.records.filter((r) => r.key.startsWith("msg|")).length).toBeGreaterThanOrEqual(5);

    // Requests at once never run two backups of one bot at once: sequences stay distinct.
    const runs = await Promise.all([1, 2, 3].map(() => api("/api/bots/keeper/backup/run", "POST")));
    expect(runs.map((r) => r.status)).toEqual([200, 200, 200]);
    const all = await listBackups({ provider: createFsProvider({ dir: backupDir }) });
    const sequences = all.map((b) => b.sequence).sort((a, b) => a - b);
    expect(new Set(sequences).size).toBe(sequences.length);
    expect(all.every((b) => b.complete)).toBe(true);
    expect(sequences[0]).toBe(1);
    expect(sequences.at(-1)).toBe(sequences.length);

    expect(logs).toContain("backup written");
    expect(logs).not.toContain(recoveryKey);
    expect(logs).not.toContain(recoveryKey.replace(/ /g, ""));
    expect(logs).not.toContain("order 1");
  });

  it("a failing destination is logged without secrets, shown, and retried later", async () => {
    const second = await account(server, "other-shop");
    await linkBot(host, "broken", second);
    await until(
      async () =>
        ((await (await api("/api/bots/broken/backup")).json()) as { lastError?: string })
          .lastError !== undefined,
      60_000,
      "the failed scheduled backup",
    );
    const status = (await (await api("/api/bots/broken/backup")).json()) as {
      lastError: string;
      lastSequence?: number;
      nextAt?: number;
      running: boolean;
    };
    expect(status.lastError).toBe("the backup storage failed");
    expect(status.lastSequence).toBeUndefined();
    // The retry is scheduled one interval (60 minutes) after the failure.
    await until(
      async () => {
        const s = (await (await api("/api/bots/broken/backup")).json()) as {
          nextAt?: number;
          lastErrorAt?: number;
        };
        return (s.nextAt ?? 0) >= (s.lastErrorAt ?? Infinity) + 60 * 60_000;
      },
      10_000,
      "the retry at the next interval",
    );
    const again = await api("/api/bots/broken/backup/run", "POST");
    expect(again.status).toBe(502);
    expect(((await again.json()) as { message: string }).message).toBe("the backup storage failed");
    const store = host.bot("broken").linkedDevice()?.store;
    expect(store?.get("app", "backup|sequence")).toBeUndefined();
    expect(logs).toContain("backup failed; retrying at the next interval");
    expect(logs).not.toContain(blocked);
    expect((await api("/api/bots/nope/backup")).status).toBe(404);
  });
});
