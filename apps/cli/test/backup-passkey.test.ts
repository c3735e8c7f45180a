// `pairwise backup keys add-passkey` and `backup restore --passkey`: real CLI processes print a
// localhost URL; headless Chromium with a CDP virtual authenticator (PRF, user verification)
// opens it, as the user's browser would.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type CDPSession, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshHome, removeHomes, runCli, spawnCli, type CliExit } from "./fixtures/cli-process.ts";
import { startServerProcess, type ServerProcess } from "./fixtures/server-process.ts";

let server: ServerProcess;
let browser: Browser;
let page: Page;
let cdp: CDPSession;
const store = mkdtempSync(join(tmpdir(), "pairwise-cli-passkey-"));
const dest = `fs:${store}`;
const homes = { alice: freshHome("alice"), bob: freshHome("bob"), phone: freshHome("phone") };
type Who = keyof typeof homes;
const as = (who: Who, ...args: string[]) =>
  runCli(["--home", homes[who], "--timeout", "10", ...args]);

function ok(run: CliExit): unknown {
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
  return JSON.parse(run.stdout);
}

/** Runs a CLI command that prints a passkey URL on stderr, and completes it in the browser. */
async function withBrowser(who: Who, ...args: string[]): Promise<CliExit> {
  const proc = spawnCli(["--home", homes[who], "--timeout", "10", ...args], 120_000);
  const url = await new Promise<string>((resolve, reject) => {
    let err = "";
    proc.child.stderr?.on("data", (c: Buffer | string) => {
      err += c.toString();
      const m = /open (http:\/\/localhost:\d+\/passkey\/\?session=[0-9a-f]+) /.exec(err);
      if (m?.[1]) resolve(m[1]);
    });
    void proc.exited.then((e) => reject(new Error(`exited first: ${e.stderr}`)));
  });
  await page.goto(url);
  await page.click("#go");
  return proc.exited;
}

async function addAuthenticator(): Promise<string> {
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      ctap2Version: "ctap2_1",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      hasPrf: true,
      automaticPresenceSimulation: true,
    },
  });
  return authenticatorId;
}

beforeAll(async () => {
  server = await startServerProcess();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  page = await browser.newPage();
  cdp = await page.context().newCDPSession(page);
  await cdp.send("WebAuthn.enable", { enableUI: false });
}, 60_000);
afterAll(async () => {
  await browser.close();
  await server.stop();
  removeHomes();
  rmSync(store, { recursive: true, force: true });
});

describe("pairwise backup with a passkey", () => {
  it("enrols a passkey, restores with it on a new device, and fails with another", async () => {
    const first = await addAuthenticator();
    ok(await as("alice", "register", "--server", server.url, "--name", "alice", "--json"));
    ok(await as("bob", "register", "--server", server.url, "--name", "bob", "--json"));
    ok(await as("bob", "send", "alice", "behind a fingerprint", "--json"));
    ok(await as("alice", "receive", "--json"));
    ok(await as("alice", "backup", "create", "--to", dest, "--json"));

    const added = await withBrowser("alice", "backup", "keys", "add-passkey", "--json");
    expect(added.code).toBe(0);
    expect(
      (JSON.parse(added.stdout) as { slots: Array<{ kind: string }> }).slots.map((s) => s.kind),
    ).toEqual(["recovery", "passkey"]);
    ok(await as("alice", "backup", "create", "--to", dest, "--json"));

    ok(await as("phone", "register", "--server", server.url, "--name", "alice-phone", "--json"));
    const restored = await withBrowser(
      "phone",
      "backup",
      "restore",
      "--from",
      dest,
      "--passkey",
      "--json",
    );
    expect(restored.code).toBe(0);
    expect((JSON.parse(restored.stdout) as { imported: number }).imported).toBeGreaterThan(0);
    expect((await as("phone", "history", "bob", "--json")).stdout).toContain(
      "behind a fingerprint",
    );

    await cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId: first });
    await addAuthenticator();
    const refused = await withBrowser("phone", "backup", "restore", "--from", dest, "--passkey");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("pairwise: the passkey gave no key\n");
  });
});
