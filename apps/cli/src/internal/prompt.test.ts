import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import type { CliIo } from "./io.ts";
import { confirm } from "./prompt.ts";

function io(signal = new AbortController().signal) {
  const stdin = new PassThrough();
  let stderr = "";
  const value: CliIo = {
    stdout: () => undefined,
    stderr: (t) => (stderr += t),
    stdin,
    stdinIsTTY: true,
    stderrIsTTY: true,
    signal,
    homeDir: "/nonexistent",
    hostname: "h",
    debug: false,
  };
  return { value, stdin, stderr: () => stderr };
}

describe("confirm", () => {
  it("asks on stderr and accepts only y or yes", async () => {
    for (const [line, want] of [
      ["y", true],
      [" YES ", true],
      ["n", false],
      ["", false],
      ["yess", false],
    ] as const) {
      const t = io();
      const answer = confirm(t.value, "Link this device?");
      t.stdin.write(`${line}\n`);
      expect(await answer).toBe(want);
      expect(t.stderr()).toBe("Link this device? [y/N] ");
    }
  });

  it("takes end of input or an interrupt as no", async () => {
    const eof = io();
    const a = confirm(eof.value, "?");
    eof.stdin.end();
    expect(await a).toBe(false);
    const ctl = new AbortController();
    const int = io(ctl.signal);
    const b = confirm(int.value, "?");
    ctl.abort();
    expect(await b).toBe(false);
  });
});
