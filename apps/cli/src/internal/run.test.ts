import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import type { CliIo } from "./io.ts";
import { runCli } from "./run.ts";

const made: string[] = [];
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

function fakeIo(over: Partial<CliIo> = {}) {
  const out = { stdout: "", stderr: "" };
  const homeDir = mkdtempSync(join(tmpdir(), "pairwise-cli-unit-"));
  made.push(homeDir);
  const io: CliIo = {
    stdout: (t) => (out.stdout += t),
    stderr: (t) => (out.stderr += t),
    stdin: new PassThrough(),
    stdinIsTTY: false,
    stderrIsTTY: false,
    signal: new AbortController().signal,
    homeDir,
    hostname: "host",
    debug: false,
    ...over,
  };
  return { io, out };
}

describe("runCli", () => {
  it("prints help on stdout and exits 0", async () => {
    const { io, out } = fakeIo();
    expect(await runCli(["--help"], io)).toBe(0);
    expect(out.stdout).toMatch(/^usage: pairwise /);
    expect(out.stderr).toBe("");
  });

  it("reports a usage error as one line on stderr with exit 2", async () => {
    const { io, out } = fakeIo();
    expect(await runCli(["send", "Not An Account", "hi"], io)).toBe(2);
    expect(out.stdout).toBe("");
    expect(out.stderr).toBe(
      "pairwise: TO must be an account name of 1-64 characters [a-z0-9._-] (see 'pairwise send --help')\n",
    );
  });

  it("needs a registered home for device commands, without creating one", async () => {
    const { io, out } = fakeIo();
    expect(await runCli(["history", "bob", "--json"], io)).toBe(1);
    expect(out.stdout).toBe("");
    expect(out.stderr).toMatch(/^pairwise: no registered device in .*\.pairwise: run/);
  });

  it("stops a command that does not handle interrupts with exit 130", async () => {
    const ctl = new AbortController();
    const { io, out } = fakeIo({ signal: ctl.signal });
    ctl.abort();
    expect(await runCli(["register", "--server", "ws://127.0.0.1:9", "--name", "a"], io)).toBe(130);
    expect(out.stderr).toBe("pairwise: interrupted\n");
  });
});
