// `pairwise interop …` and `pairwise send name@provider …` through the real program, against two
// relays federated as two providers ("prova", "provb") on loopback.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadServerKey, resolveConfig, startServer, type RunningServer } from "@pairwise/server";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshHome, jsonLines, removeHomes, runCli, type CliExit } from "./fixtures/cli-process.ts";
import { closedPort } from "./fixtures/server-process.ts";

let A: RunningServer;
let B: RunningServer;
const homes = { alice: freshHome("alice"), bob: freshHome("bob") };
const as = (who: keyof typeof homes, ...args: string[]) =>
  runCli(["--home", homes[who], "--timeout", "10", ...args]);

function ok(run: CliExit): CliExit {
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
  return run;
}

beforeAll(async () => {
  const dirA = mkdtempSync(join(tmpdir(), "pairwise-cli-prova-"));
  const dirB = mkdtempSync(join(tmpdir(), "pairwise-cli-provb-"));
  const keyA = Buffer.from(loadServerKey(dirA).publicKey).toString("base64url");
  const keyB = Buffer.from(loadServerKey(dirB).publicKey).toString("base64url");
  const [portA, portB] = [await closedPort(), await closedPort()];
  const start = (dir: string, provider: string, port: number, partner: object) =>
    startServer({
      config: resolveConfig({
        dataDir: dir,
        host: "127.0.0.1",
        port: 0,
        logLevel: "silent",
        provider,
        federationPort: port,
        partners: [partner as { name: string; url: string; publicKey: string }],
      }),
      logger: pino({ level: "silent" }),
    });
  A = await start(dirA, "prova", portA, {
    name: "provb",
    url: `ws://127.0.0.1:${portB}`,
    publicKey: keyB,
  });
  B = await start(dirB, "provb", portB, {
    name: "prova",
    url: `ws://127.0.0.1:${portA}`,
    publicKey: keyA,
  });
}, 60_000);

afterAll(async () => {
  await A.close();
  await B.close();
  removeHomes();
});

describe("pairwise interop", () => {
  it("third-party chats: off by default, enabled per provider, sent like any message and labelled", async () => {
    ok(await as("alice", "register", "--server", A.url, "--name", "alice"));
    ok(await as("bob", "register", "--server", B.url, "--name", "bob"));
    expect(JSON.parse(ok(await as("alice", "interop", "status", "--json")).stdout)).toEqual({
      provider: "prova",
      partners: ["provb"],
      enabled: [],
      groups: "contacts",
      links: {
        provb: {
          state: "connected",
          carries: ["text", "photos", "videos", "voiceNotes", "files", "replies", "groups"],
        },
      },
    });
    const off = await as("alice", "send", "bob@provb", "hello");
    expect([off.code, off.stderr]).toEqual([
      1,
      "pairwise: third-party chats with provb are off: run 'pairwise interop enable provb'\n",
    ]);
    ok(await as("alice", "interop", "enable", "provb"));
    // Bob has not opted in: he cannot be found.
    const hidden = await as("alice", "send", "bob@provb", "hello");
    expect(hidden.code).toBe(1);
    expect(hidden.stderr).toMatch(
      /no account named bob@provb that accepts chats from your provider/,
    );
    expect(ok(await as("bob", "interop", "enable", "prova")).stdout).toMatch(
      /third-party chats enabled with: prova/,
    );
    ok(await as("alice", "send", "bob@provb", "hello across"));
    const got = jsonLines(ok(await as("bob", "receive", "--json")).stdout);
    expect(got).toEqual([
      expect.objectContaining({ from: "alice@prova", text: "hello across", thirdParty: true }),
    ]);
    expect(ok(await as("bob", "history", "alice@prova")).stdout).toMatch(
      /alice@prova#1 -> bob \[third-party\]: hello across/,
    );
  }, 120_000);

  it("group policy: a refused member is named with the reason", async () => {
    ok(await as("bob", "interop", "groups", "nobody"));
    const created = ok(await as("alice", "group", "create", "mixed", "bob@provb"));
    expect(created.stdout).toMatch(
      /bob@provb was not added: they let nobody add them to third-party groups/,
    );
    const bad = await as("bob", "interop", "groups", "sometimes");
    expect(bad.code).toBe(2);
    const disabled = ok(await as("bob", "interop", "disable", "prova", "--json"));
    expect(JSON.parse(disabled.stdout)).toMatchObject({ enabled: [], groups: "nobody" });
  }, 60_000);
});
