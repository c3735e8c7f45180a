#!/usr/bin/env node
// pairwise: the Pairwise reference client. See `pairwise --help` and the README.
import { hostname, homedir } from "node:os";
import { isatty } from "node:tty";
import { runCli } from "./internal/run.ts";

const interrupts = new AbortController();
let interrupted = 0;
process.on("SIGINT", () => {
  // The first Ctrl-C lets the command stop cleanly; a second one leaves at once.
  if (interrupted++ > 0) process.exit(130);
  interrupts.abort();
});

// A reader that went away (`pairwise receive --json | head -1`) ends the program quietly.
process.stdout.on("error", () => process.exit(1));

const code = await runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  stdin: process.stdin,
  stdinIsTTY: isatty(0),
  stderrIsTTY: isatty(2),
  signal: interrupts.signal,
  homeDir: homedir(),
  hostname: hostname(),
  debug: process.env.PAIRWISE_DEBUG === "1",
});

// Exit once both streams are flushed: leftover work (a connection the command gave up on)
// must not keep the process alive.
process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
