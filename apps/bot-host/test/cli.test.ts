// The pairwise-bot-host program: clear one-line errors and exit codes for bad usage and config.
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { packageRoot, repoRoot, tempDir } from "./support.ts";

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", join(packageRoot, "src/cli.ts"), ...args],
      { cwd: repoRoot, timeout: 60_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

describe("pairwise-bot-host", () => {
  it("exits 2 on bad usage and 1 with one clear line on a bad config", async () => {
    const usage = await run(["--nope"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/usage: pairwise-bot-host/);

    // The repo root has no pairwise-bot-host.config.* file.
    const none = await run([]);
    expect(none.code).toBe(1);
    expect(none.stderr).toBe(
      `pairwise-bot-host: InvalidConfig: no config file: pass --config or create pairwise-bot-host.config.json in ${repoRoot}\n`,
    );
    const dir = tempDir("cli");

    writeFileSync(join(dir, "c.json"), JSON.stringify({ adminToken: "short", bots: [] }));
    const bad = await run(["--config", join(dir, "c.json")]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(
      /^pairwise-bot-host: InvalidConfig: .*adminToken: at least 16 characters; bots: /,
    );

    writeFileSync(
      join(dir, "p.json"),
      JSON.stringify({
        adminToken: "0123456789abcdef-token",
        http: { port: 0 },
        bots: [{ name: "x", server: "ws://127.0.0.1:9", stateDir: "x", plugins: ["./missing.js"] }],
      }),
    );
    const plugin = await run(["--config", join(dir, "p.json")]);
    expect(plugin.code).toBe(1);
    expect(plugin.stderr).toMatch(
      /PluginLoadFailed: bot x: plugin "\.\/missing\.js" cannot be loaded/,
    );
  });
});
