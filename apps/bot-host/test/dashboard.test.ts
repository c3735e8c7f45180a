// The dashboard in headless Chromium: log in, read the link code from the page, approve it with
// the real `pairwise link` CLI, and watch the bot turn connected without reloading.
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import type { RunningServer } from "@pairwise/server";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningBotHost } from "../src/index.ts";
import { ADMIN_TOKEN, launchChromium, startHost, startRelay, tempDir } from "./support.ts";

const run = promisify(execFile);
const cliJs = join(
  dirname(createRequire(import.meta.url).resolve("@pairwise/cli/package.json")),
  "dist/cli.js",
);
const pairwise = (home: string, ...args: string[]) =>
  run(process.execPath, [cliJs, "--home", home, "--timeout", "30", ...args], { timeout: 90_000 });

let server: RunningServer;
let host: RunningBotHost;
let browser: Browser;

beforeAll(async () => {
  server = await startRelay();
  host = await startHost(server, [{ name: "demo", plugins: ["help", "echo"] }]);
  browser = await launchChromium();
});

afterAll(async () => {
  await browser.close();
  await host.stop();
  await server.close();
});

describe("dashboard", () => {
  it("asks for the admin token", async () => {
    const page = await browser.newPage();
    const res = await page.goto(`${host.url}/`);
    expect(res?.status()).toBe(401);
    await page.fill('input[name="token"]', "wrong-token-wrong-token");
    await page.click('button[type="submit"]');
    await page.waitForSelector('[role="alert"]');
    expect(await page.textContent('[role="alert"]')).toBe("Wrong token.");
    await page.fill('input[name="token"]', ADMIN_TOKEN);
    await page.click('button[type="submit"]');
    await page.waitForSelector('[data-bot="demo"]');
    await page.close();
    expect((await fetch(`${host.url}/api/bots`)).status).toBe(401);
    expect((await fetch(`${host.url}/metrics`)).status).toBe(401);
  });

  it("shows the link QR code, and the bot turns connected live once the owner links it", async () => {
    const ownerHome = join(tempDir("owner"), "home");
    await pairwise(ownerHome, "register", "--server", server.url, "--name", "owner");

    const page = await browser.newPage();
    await page.goto(`${host.url}/?token=${ADMIN_TOKEN}`);
    const bot = page.locator('[data-bot="demo"]');
    await bot.locator("[data-link-code]").waitFor({ timeout: 60_000 });
    expect(await bot.getAttribute("data-state")).toBe("unlinked");
    expect(await bot.locator(".qr svg").count()).toBe(1);
    const code = (await bot.locator("[data-link-code]").getAttribute("data-link-code")) ?? "";
    expect(code).toMatch(/^pairwise:\/\/link\?/);
    await page.waitForSelector('body[data-live="true"]');
    // A marker on the window: it is gone if the page reloads.
    await page.evaluate("window.marker = 42");

    const linked = await pairwise(ownerHome, "link", code, "--yes");
    expect(linked.stdout).toMatch(/linked|device/i);

    await page.waitForSelector('[data-bot="demo"][data-state="connected"]', { timeout: 60_000 });
    expect(await page.evaluate("window.marker")).toBe(42);
    expect(await bot.locator(".account").textContent()).toBe("owner");
    expect(await bot.locator("[data-link-code]").count()).toBe(0);
    expect(await bot.locator(".commands").textContent()).toBe("/help");
    const devices = await pairwise(ownerHome, "devices");
    expect(devices.stdout).toContain("bot demo");
    await page.close();

    const metrics = await fetch(`${host.url}/metrics`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    const text = await metrics.text();
    expect(text).toContain('pairwise_bot_state{bot="demo",state="connected"} 1');
    expect(text).toContain('pairwise_bot_messages_handled_total{bot="demo"} 0');
    const health = await (await fetch(`${host.url}/healthz`)).json();
    expect(health).toEqual({ status: "ok", bots: { demo: "connected" } });
  });
});
