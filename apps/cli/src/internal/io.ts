/**
 * What the CLI needs from its process: output streams, the terminal, interrupts and a few
 * machine facts. Injected so commands can run inside tests without a real terminal.
 */
export interface CliIo {
  /** Writes to stdout (the command's result). */
  stdout(text: string): void;
  /** Writes to stderr (errors, warnings, prompts, link-code hints). */
  stderr(text: string): void;
  /** Where confirmations are read from. */
  stdin: NodeJS.ReadableStream;
  stdinIsTTY: boolean;
  stderrIsTTY: boolean;
  /** Aborted when the user interrupts (SIGINT). */
  signal: AbortSignal;
  /** The user's home directory (the default device home is `~/.pairwise`). */
  homeDir: string;
  /** This machine's name (the default name of a linked companion). */
  hostname: string;
  /** Print stack traces of unexpected errors (`PAIRWISE_DEBUG=1`). */
  debug: boolean;
}

/** Global settings every command runs with. */
export interface CliContext {
  io: CliIo;
  /** The device's home directory: one directory is one device. */
  home: string;
  /** Print exactly one JSON value (or JSON lines where a command says so) on stdout. */
  json: boolean;
  /** Bound on reaching the server and on every request, in ms. */
  timeoutMs: number;
  /** Whether `--timeout` was given (link-code then also waits that long for approval). */
  timeoutGiven: boolean;
}

/** Resolves after `ms`, or early (without error) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
