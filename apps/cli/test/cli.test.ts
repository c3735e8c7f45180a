// The real `pairwise` program against a real `pairwise-server` process: every step is a
// separate CLI process with its own --home, as a script would drive it.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  freshHome,
  jsonLines,
  removeHomes,
  runCli,
  spawnCli,
  type CliExit,
} from "./fixtures/cli-process.ts";
import { closedPort, startServerProcess, type ServerProcess } from "./fixtures/server-process.ts";

let server: ServerProcess;
const homes = { alice: freshHome("alice"), bob: freshHome("bob"), laptop: freshHome("laptop") };
type Who = keyof typeof homes;

/** `pairwise --home <who's home> --timeout 10 args...` */
const as = (who: Who, ...args: string[]) =>
  runCli(["--home", homes[who], "--timeout", "10", ...args]);

function ok(run: CliExit): CliExit {
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
  return run;
}

/** Stderr of a receive that dropped nothing, or only messages from alice's unlinked laptop. */
const droppedFromUnlinked =
  /^(pairwise: warning: dropped a message from alice#\d+: not a verified device\n)*$/;

const json = (run: CliExit): unknown => JSON.parse(ok(run).stdout);

const messages = (run: CliExit) =>
  jsonLines(ok(run).stdout).map((m) => {
    const { id, from, fromDevice, to, text, sync } = m as Record<string, unknown>;
    return { id, from, fromDevice, to, text, sync };
  });

beforeAll(async () => {
  server = await startServerProcess();
});
afterAll(async () => {
  await server.stop();
  removeHomes();
});

describe("pairwise against a real relay", () => {
  let laptopId = 0;
  let toBob = "";

  it("registers two accounts; a failed attempt leaves nothing behind; an unapproved code times out", async () => {
    const closed = `ws://127.0.0.1:${String(await closedPort())}`;
    const [a, [failed, b], unapproved] = await Promise.all([
      as("alice", "register", "--server", server.url, "--name", "alice", "--json"),
      (async () => [
        await as("bob", "register", "--server", closed, "--name", "bob"),
        await as("bob", "register", "--server", server.url, "--name", "bob", "--json"),
      ])(),
      runCli([
        "--home",
        freshHome("nobody"),
        "--timeout",
        "1",
        "link-code",
        "--server",
        server.url,
      ]),
    ]);
    expect(json(a)).toEqual({ account: "alice", device: 1 });
    expect(failed.code).toBe(1);
    // The retry in the same home registers, and later commands use the right server.
    expect(json(b)).toEqual({ account: "bob", device: 1 });
    expect(unapproved.code).toBe(1);
    expect(unapproved.stdout).toMatch(/^pairwise:\/\/link\?v=1&[^\n]+\n$/);
    expect(unapproved.stderr).toBe("pairwise: the link code was not approved within 1 s\n");
    const taken = await runCli([
      "--home",
      freshHome("bob2"),
      "register",
      "--server",
      server.url,
      "--name",
      "bob",
    ]);
    expect([taken.code, taken.stderr]).toEqual([1, "pairwise: the account name bob is taken\n"]);
  });

  it("delivers a message exactly once", async () => {
    const sent = json(await as("alice", "send", "bob", "hello bob", "--json")) as { id: string };
    expect(sent.id).toMatch(/^[\w-]{8,}$/);
    toBob = sent.id;
    const first = await as("bob", "receive", "--json");
    const [m] = jsonLines(first.stdout) as Array<Record<string, unknown>>;
    expect(messages(first)).toEqual([
      { id: sent.id, from: "alice", fromDevice: 1, to: "bob", text: "hello bob", sync: false },
    ]);
    expect(typeof m?.timestamp).toBe("number");
    // Acknowledged once stored: a second receive has nothing.
    expect(messages(await as("bob", "receive", "--json"))).toEqual([]);
    // --wait keeps listening: a message sent meanwhile is printed, the old one is not.
    const listening = spawnCli(["--home", homes.bob, "receive", "--wait", "4", "--json"]);
    await new Promise((r) => setTimeout(r, 1500));
    const later = json(await as("alice", "send", "bob", "are you there?", "--json")) as {
      id: string;
    };
    expect(messages(await listening.exited)).toEqual([
      {
        id: later.id,
        from: "alice",
        fromDevice: 1,
        to: "bob",
        text: "are you there?",
        sync: false,
      },
    ]);
  });

  it("links a companion through link-code and link --yes", async () => {
    const companion = spawnCli([
      "--home",
      homes.laptop,
      "--timeout",
      "30",
      "link-code",
      "--server",
      server.url,
      "--device-name",
      "laptop",
      "--json",
    ]);
    const uri = await companion.firstLine;
    expect(uri).toMatch(/^pairwise:\/\/link\?v=1&/);
    const approved = json(await as("alice", "link", uri, "--yes", "--json")) as { device: number };
    expect(approved.device).toBeGreaterThanOrEqual(2);
    laptopId = approved.device;
    const done = await companion.exited;
    expect(done.code).toBe(0);
    const lines = done.stdout.trim().split("\n");
    expect(lines[0]).toBe(uri);
    expect(JSON.parse(lines.at(-1) ?? "")).toEqual({
      linked: true,
      account: "alice",
      device: laptopId,
    });
  });

  it("fans a message to alice out to both of her devices", async () => {
    const sent = json(await as("bob", "send", "alice", "to both of you", "--json")) as {
      id: string;
    };
    const expected = {
      id: sent.id,
      from: "bob",
      fromDevice: 1,
      to: "alice",
      text: "to both of you",
      sync: false,
    };
    const [phone, laptop] = await Promise.all([
      as("alice", "receive", "--json"),
      as("laptop", "receive", "--json"),
    ]);
    expect(messages(phone)).toEqual([expected]);
    expect(messages(laptop)).toEqual([expected]);
  });

  it("shows what alice sends from her phone on the companion as a sync copy", async () => {
    const sent = json(await as("alice", "send", "bob", "from my phone", "--json")) as {
      id: string;
    };
    expect(messages(await as("laptop", "receive", "--json"))).toEqual([
      { id: sent.id, from: "alice", fromDevice: 1, to: "bob", text: "from my phone", sync: true },
    ]);
  });

  it("lists both devices", async () => {
    const devices = json(await as("alice", "devices", "--json")) as Array<Record<string, unknown>>;
    expect(devices.map(({ id, name, current }) => ({ id, name, current }))).toEqual([
      { id: 1, name: "primary", current: true },
      { id: laptopId, name: "laptop", current: false },
    ]);
    for (const d of devices) {
      expect(typeof d.linkedAt).toBe("number");
      expect(typeof d.lastSeen).toBe("number");
    }
  });

  it("unlinks the companion: it gets nothing more and the server refuses it", async () => {
    expect(json(await as("alice", "unlink", String(laptopId), "--json"))).toEqual({
      unlinked: laptopId,
    });
    const sent = json(await as("bob", "send", "alice", "after unlink", "--json")) as {
      id: string;
    };
    const [phone, laptop] = await Promise.all([
      as("alice", "receive", "--json"),
      as("laptop", "receive", "--json"),
    ]);
    // A delivery receipt the laptop sent the phone (for the sync copy above) may reach the
    // phone only now, after the unlink: the phone drops it with a warning.
    expect(phone.code).toBe(0);
    expect(phone.stderr).toMatch(droppedFromUnlinked);
    expect(jsonLines(phone.stdout).map((m) => (m as { id: unknown }).id)).toEqual([sent.id]);
    expect(laptop.code).toBe(1);
    expect(laptop.stdout).toBe("");
    expect(laptop.stderr).toMatch(/^pairwise: .*no longer.*\n$/);
  });

  it("prints the local conversation with history --json", async () => {
    const history = json(await as("alice", "history", "bob", "--json")) as Array<
      Record<string, unknown>
    >;
    expect(history.map((m) => [m.id === toBob, m.from, m.to, m.text, m.sync])).toEqual([
      [true, "alice", "bob", "hello bob", false],
      [false, "alice", "bob", "are you there?", false],
      [false, "bob", "alice", "to both of you", false],
      [false, "alice", "bob", "from my phone", false],
      [false, "bob", "alice", "after unlink", false],
    ]);
  });

  it("compares security codes, verifies, sends a file and talks in a group", async () => {
    const [a, b] = await Promise.all([
      as("alice", "safety-code", "bob", "--json"),
      as("bob", "safety-code", "alice", "--json"),
    ]);
    const code = (json(a) as { code: string }).code;
    expect(code).toMatch(/^(\d{5} ){11}\d{5}$/);
    expect((json(b) as { code: string }).code).toBe(code);
    expect(json(await as("alice", "verify", "bob", code, "--json"))).toEqual({ verified: true });
    const wrong = await as("alice", "verify", "bob", "0".repeat(60));
    expect(wrong.code).toBe(1);

    const file = join(homes.alice, "note.txt");
    writeFileSync(file, "a small encrypted file\n");
    const sentFile = json(await as("alice", "send-file", "bob", file, "--json")) as { id: string };
    // Bob may also get (and drop, with a warning) receipts the unlinked laptop sent before.
    const bobReceive = await as("bob", "receive", "--json");
    expect(bobReceive.code).toBe(0);
    expect(bobReceive.stderr).toMatch(droppedFromUnlinked);
    const got = jsonLines(bobReceive.stdout) as Array<Record<string, unknown>>;
    const received = got.find((m) => m.id === sentFile.id);
    expect(typeof received?.file).toBe("string");
    expect(readFileSync(String(received?.file), "utf8")).toBe("a small encrypted file\n");

    const group = (
      json(await as("alice", "group", "create", "friends", "bob", "--json")) as { group: string }
    ).group;
    expect(
      (json(await as("alice", "group", "list", "--json")) as Array<{ id: string }>).map(
        (g) => g.id,
      ),
    ).toContain(group);
    json(await as("alice", "send", `group:${group}`, "hello friends", "--json"));
    const inGroup = messages(await as("bob", "receive", "--json"));
    expect(inGroup.map((m) => [m.from, m.to, m.text])).toEqual([
      ["alice", `group:${group}`, "hello friends"],
    ]);
  });

  it("chats from a pipe: typed lines are sent, /quit leaves", async () => {
    const chat = await spawnCli(
      ["--home", homes.alice, "--timeout", "10", "chat", "bob"],
      60_000,
      "typed in chat\n/quit\n",
    ).exited;
    expect(chat.code).toBe(0);
    const got = messages(await as("bob", "receive", "--json"));
    expect(got.map((m) => [m.from, m.text])).toEqual([["alice", "typed in chat"]]);
  });
});
