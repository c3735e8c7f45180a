import { createInterface } from "node:readline";
import type { CliIo } from "./io.ts";

/**
 * Asks a yes/no question on stderr and reads one line from stdin. Only "y" or "yes" (any case)
 * confirm; end of input or an interrupt is a no.
 */
export function confirm(io: CliIo, question: string): Promise<boolean> {
  io.stderr(`${question} [y/N] `);
  return new Promise((resolve) => {
    const rl = createInterface({ input: io.stdin, terminal: false });
    let answered = false;
    const finish = (yes: boolean) => {
      if (answered) return;
      answered = true;
      io.signal.removeEventListener("abort", onAbort);
      rl.close();
      resolve(yes);
    };
    const onAbort = () => {
      io.stderr("\n");
      finish(false);
    };
    io.signal.addEventListener("abort", onAbort, { once: true });
    rl.once("line", (line) => finish(/^\s*y(es)?\s*$/i.test(line)));
    rl.once("close", () => finish(false));
  });
}
