// Group membership notices through the real `pairwise` program and a real relay process: a
// member added while no process of it runs learns of the group at its next `receive`, which
// prints no message for a notice and stays clean.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshHome, jsonLines, removeHomes, runCli, type CliExit } from "./fixtures/cli-process.ts";
import { startServerProcess, type ServerProcess } from "./fixtures/server-process.ts";

let server: ServerProcess;
const homes = { gina: freshHome("gina"), hank: freshHome("hank") };
type Who = keyof typeof homes;

const as = (who: Who, ...args: string[]) =>
  runCli(["--home", homes[who], "--timeout", "10", ...args]);

function ok(run: CliExit): CliExit {
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
  return run;
}

const json = (run: CliExit): unknown => JSON.parse(ok(run).stdout);

beforeAll(async () => {
  server = await startServerProcess();
});
afterAll(async () => {
  await server.stop();
  removeHomes();
});

describe("group notices in the CLI", () => {
  it("receive --json ignores notices cleanly; group list then shows the group and its changes", async () => {
    ok(await as("gina", "register", "--server", server.url, "--name", "gina", "--json"));
    ok(await as("hank", "register", "--server", server.url, "--name", "hank", "--json"));
    expect(json(await as("hank", "group", "list", "--json"))).toEqual([]);

    const { group } = json(await as("gina", "group", "create", "crew", "hank", "--json")) as {
      group: string;
    };
    const first = ok(await as("hank", "receive", "--json"));
    expect(jsonLines(first.stdout)).toEqual([]);
    expect(json(await as("hank", "group", "list", "--json"))).toEqual([
      { id: group, name: "crew", members: ["gina", "hank"] },
    ]);

    ok(await as("gina", "group", "remove", group, "hank", "--json"));
    ok(await as("hank", "receive", "--json"));
    expect(json(await as("hank", "group", "list", "--json"))).toEqual([
      { id: group, name: "crew", members: ["gina"] },
    ]);
  }, 120_000);
});
