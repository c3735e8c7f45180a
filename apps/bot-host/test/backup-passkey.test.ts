// The backup page in headless Chromium with a CDP virtual authenticator (PRF, user
// verification): enroll a passkey for a bot on the dashboard, back up, alter the bot's history,
// restore with the same passkey byte-identical; another authenticator fails clearly and nothing
// is restored.
import { selectDeviceRecords } from "@pairwise/backup";
import type { KeyValueStore } from "@pairwise/core";
import type { RunningServer } from "@pairwise/server";
import pino from "pino";
import type { Browser, CDPSession, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBotHost, type RunningBotHost } from "../src/index.ts";
import {
  ADMIN_TOKEN,
  account,
  botConfig,
  canonicalRecords,
  customer,
  launchChromium,
  linkBot,
  startRelay,
  tempDir,
  until,
} from "./support.ts";

let server: RunningServer;
let host: RunningBotHost;
let browser: Browser;
let page: Page;
let cdp: CDPSession;
/** The dashboard as the browser reaches it: passkeys need a host name (not an IP address). */
let origin: string;

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

type Status = {
  lastSequence?: number;
  passkeys: number;
  enrolment?: { state: string; error?: string };
  restore?: { state: string; error?: string; imported?: number; sequence?: number };
};

async function status(): Promise<Status> {
  const res = await fetch(`${host.url}/api/bots/vault/backup`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  return (await res.json()) as Status;
}

/** On the bot's backup page, presses `button`, then the passkey page's button, as a person would. */
async function withPasskey(button: string): Promise<string | undefined> {
  await page.goto(`${origin}/backup/vault`);
  await page.waitForSelector('body[data-loaded="true"]');
  await Promise.all([page.waitForURL(/\/passkey\/\?session=/), page.click(button)]);
  await page.click("#go");
  await page.waitForSelector("body[data-done]", { timeout: 60_000 });
  return (await page.getAttribute("body", "data-done")) ?? undefined;
}

beforeAll(async () => {
  server = await startRelay();
  const config = botConfig(server, [
    {
      name: "vault",
      backup: { to: `fs:${tempDir("vault-backups")}`, intervalMinutes: 1440 },
    },
  ]);
  host = await startBotHost({
    config,
    logger: pino({ level: "silent" }),
    // Backups in this test are the ones it asks for.
    backupStartDelayMs: 3_600_000,
  });
  origin = host.url.replace("127.0.0.1", "localhost");
  browser = await launchChromium();
  page = await browser.newPage();
  page.on("dialog", (d) => void d.accept());
  cdp = await page.context().newCDPSession(page);
  await cdp.send("WebAuthn.enable", { enableUI: false });
}, 120_000);

afterAll(async () => {
  await browser.close();
  await host.stop();
  await server.close();
});

describe("bot backups with a passkey, on the dashboard", () => {
  it("enrolls, backs up, restores byte-identical with the same passkey, fails with another", async () => {
    const owner = await account(server, "bank");
    await linkBot(host, "vault", owner);
    const bot = host.bot("vault");
    const c = await customer(server, "saver");
    for (let i = 0; i < 6; i++) await c.device.sendText("bank", `deposit ${String(i)}`);
    await until(() => bot.counters.received >= 6, 60_000, "the bot to receive");
    const store: KeyValueStore | undefined = bot.linkedDevice()?.store;
    if (!store) throw new Error("not linked");
    const history = () => [...selectDeviceRecords(store)].filter((r) => r.key.startsWith("msg|"));
    await until(() => history().length >= 6, 30_000, "stored history");

    // Sign in, enroll a passkey from the bot's backup page.
    await page.goto(`${origin}/?token=${ADMIN_TOKEN}`);
    await page.waitForSelector('[data-bot="vault"] a.backup-link');
    const first = await addAuthenticator();
    expect(await withPasskey("#enrol")).toBe("ok");
    await until(async () => (await status()).enrolment?.state === "done", 30_000, "enrolment");
    expect((await status()).passkeys).toBe(1);

    // Back up now from the page.
    await page.goto(`${origin}/backup/vault`);
    await page.waitForSelector('body[data-loaded="true"]');
    await page.click("#backup-now");
    await page.waitForSelector("#message:has-text('Backed up.')", { timeout: 60_000 });
    expect(await page.textContent("#last-sequence")).toBe("1");
    expect(await page.textContent("#passkeys")).toBe("1");
    await page.goto(`${origin}/`);
    await page.waitForSelector('[data-bot="vault"] .backup:has-text("(#1)")');
    const backedUp = canonicalRecords(selectDeviceRecords(store));

    // The bot's history is damaged: records altered and removed.
    const damage = () => {
      const msgs = history();
      store.apply([
        ...msgs.slice(0, 2).map((r) => ({ table: "app" as const, key: r.key, value: null })),
        ...msgs
          .slice(2, 4)
          .map((r) => ({ table: "app" as const, key: r.key, value: new Uint8Array([0]) })),
      ]);
    };
    damage();
    expect(canonicalRecords(selectDeviceRecords(store))).not.toBe(backedUp);

    // Restore with the same passkey: byte-identical.
    expect(await withPasskey("#restore")).toBe("ok");
    await until(
      async () => (await status()).restore?.state === "done",
      60_000,
      "the restore to finish",
    );
    expect((await status()).restore).toMatchObject({ state: "done", sequence: 1 });
    expect(canonicalRecords(selectDeviceRecords(store))).toBe(backedUp);

    // Another authenticator (another person's passkey): a clear failure, nothing restored.
    damage();
    const damaged = canonicalRecords(selectDeviceRecords(store));
    await cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId: first });
    await addAuthenticator();
    expect(await withPasskey("#restore")).toBe("failed");
    await until(
      async () => (await status()).restore?.state === "failed",
      60_000,
      "the restore to fail",
    );
    expect((await status()).restore?.error).toMatch(
      /the passkey gave no key.*nothing was restored/,
    );
    expect(canonicalRecords(selectDeviceRecords(store))).toBe(damaged);
    await page.goto(`${origin}/backup/vault`);
    await page.waitForSelector('#restore-status[data-state="failed"]');
    expect(await page.textContent("#restore-status")).toContain("nothing was restored");

    // The passkey API is behind the admin token.
    const anon = await fetch(`${host.url}/passkey/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(anon.status).toBe(401);
  });
});
