// Config validation and plugin loading: clear typed errors, checked before anything starts.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BotHostError, loadConfigFile, parseConfig } from "../src/index.ts";
import { loadPlugin } from "../src/internal/plugin-loader.ts";
import { packageRoot } from "./support.ts";

const valid = {
  adminToken: "0123456789abcdef-token",
  bots: [
    { name: "demo", server: "ws://127.0.0.1:8787", stateDir: "state/demo", plugins: ["echo"] },
  ],
};

function expectCode(fn: () => unknown, code: string, message: RegExp) {
  try {
    fn();
  } catch (err) {
    expect(BotHostError.is(err)).toBe(true);
    expect((err as BotHostError).code).toBe(code);
    expect((err as Error).message).toMatch(message);
    return;
  }
  throw new Error("expected a BotHostError");
}

describe("config", () => {
  it("reads JSON and YAML files and resolves paths against the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "pairwise-bot-config-"));
    writeFileSync(
      join(dir, "pairwise-bot-host.config.yaml"),
      `adminToken: "0123456789abcdef-token"
http: { port: 0 }
bots:
  - name: demo
    server: ws://127.0.0.1:8787
    stateDir: ./state/demo
    plugins:
      - echo
      - [auto-reply, { rules: [{ keyword: hours, answer: "9 to 5" }] }]
`,
    );
    const c = loadConfigFile(undefined, dir);
    expect(c.bots[0]?.stateDir).toBe(join(dir, "state/demo"));
    expect(c.bots[0]?.plugins).toEqual([
      { specifier: "echo", options: undefined },
      { specifier: "auto-reply", options: { rules: [{ keyword: "hours", answer: "9 to 5" }] } },
    ]);
    expect(c.bots[0]?.concurrency).toBe(8);
    writeFileSync(join(dir, "x.json"), JSON.stringify(valid));
    expect(loadConfigFile("x.json", dir).bots[0]?.deviceName).toBe("bot demo");
  });

  it("names every bad field, without values", () => {
    expectCode(
      () => parseConfig({ ...valid, adminToken: "short" }, "/"),
      "InvalidConfig",
      /adminToken: at least 16/,
    );
    expectCode(
      () => parseConfig({ ...valid, bots: [{ ...valid.bots[0], server: "http://x" }] }, "/"),
      "InvalidConfig",
      /bots\.0\.server/,
    );
    expectCode(
      () => parseConfig({ ...valid, bots: [valid.bots[0], valid.bots[0]] }, "/"),
      "InvalidConfig",
      /unique/,
    );
    expectCode(() => parseConfig({ ...valid, extra: 1 }, "/"), "InvalidConfig", /Unrecognized key/);
    const dir = mkdtempSync(join(tmpdir(), "pairwise-bot-config-"));
    writeFileSync(join(dir, "bad.json"), "{ nope");
    expectCode(() => loadConfigFile("bad.json", dir), "InvalidConfig", /not valid JSON/);
    expectCode(() => loadConfigFile(undefined, dir), "InvalidConfig", /no config file/);
  });
});

describe("plugin loading", () => {
  const load = (specifier: string, options?: unknown) =>
    loadPlugin({ specifier, options }, join(packageRoot, "test"), "bot demo");

  it("loads built-ins by name and subpath, and local files with options", async () => {
    expect((await load("echo")).name).toBe("echo");
    expect((await load("@pairwise/bot-host/help")).name).toBe("help");
    expect((await load("./fixtures/shout-plugin.mjs", { suffix: "!" })).name).toBe("shout");
  });

  it("rejects what is not a loadable, valid plugin with a clear error", async () => {
    await expect(load("./fixtures/missing.mjs")).rejects.toMatchObject({
      code: "PluginLoadFailed",
      message: expect.stringMatching(/missing\.mjs.*cannot be loaded/) as string,
    });
    await expect(load("./fixtures/not-a-plugin.mjs")).rejects.toMatchObject({
      code: "PluginLoadFailed",
      message: expect.stringMatching(/not a plugin/) as string,
    });
    await expect(load("no-such-package-xyz")).rejects.toMatchObject({ code: "PluginLoadFailed" });
    await expect(load("auto-reply", { rules: [{ answer: "x" }] })).rejects.toMatchObject({
      code: "PluginLoadFailed",
      message: expect.stringMatching(/exactly one of `keyword` or `pattern`/) as string,
    });
    await expect(
      load("auto-reply", { rules: [{ pattern: "(", answer: "x" }] }),
    ).rejects.toMatchObject({
      code: "PluginLoadFailed",
      message: expect.stringMatching(/not a valid regex/) as string,
    });
    await expect(load("webhook", { url: "ftp://x", secret: "s" })).rejects.toMatchObject({
      code: "PluginLoadFailed",
    });
  });
});
