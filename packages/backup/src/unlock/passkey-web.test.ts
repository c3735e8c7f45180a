// Enrol a passkey, back up, restore byte-identical with the same passkey, fail with another:
// in headless Chromium with a CDP virtual authenticator that supports PRF and user verification.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type CDPSession, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFsProvider } from "../providers/fs.ts";
import { createBackup } from "../internal/create-backup.ts";
import { BackupError } from "../internal/errors.ts";
import { addPasskeySlot, createKeyring, type BackupKeyring } from "../internal/keyring.ts";
import type { BackupRecord } from "../internal/records.ts";
import { restoreBackup, type RestoreSink } from "../internal/restore-backup.ts";
import { startPasskeyWeb, type RunningPasskeyWeb } from "./passkey-web.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
let browser: Browser;
let page: Page;
let cdp: CDPSession;
let web: RunningPasskeyWeb;
let dir: string;

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

/** Opens a ceremony page and presses its button, as a person would. */
async function ceremony(url: string): Promise<void> {
  await page.goto(url);
  await page.click("#go");
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pw-passkey-"));
  web = await startPasskeyWeb({ timeoutMs: 60_000 });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
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
  await web.close();
  await rm(dir, { recursive: true, force: true });
});

function collect(): RestoreSink & { records: BackupRecord[]; committed: boolean } {
  const sink = {
    records: [] as BackupRecord[],
    committed: false,
    put: (r: BackupRecord) => void sink.records.push(r),
    commit: () => void (sink.committed = true),
    abort: () => void (sink.records = []),
  };
  return sink;
}

describe("passkey slot in headless Chromium (virtual authenticator with PRF)", () => {
  it("enrols, backs up, restores byte-identical with the same passkey, fails with another", async () => {
    const first = await addAuthenticator();
    const enrolment = web.enrol("alice");
    await ceremony(web.origin + enrolment.url);
    const enrolled = await enrolment.result;
    expect(enrolled.prfOutput.length).toBe(32);
    let keyring: BackupKeyring = addPasskeySlot(createKeyring(), enrolled);
    expect(keyring.slots.map((s) => s.kind)).toEqual(["recovery", "passkey"]);

    const provider = createFsProvider({ dir });
    const input: BackupRecord[] = Array.from({ length: 20 }, (_, i) => ({
      table: "app",
      key: `msg|p|${String(i)}`,
      value: randomBytes(10_000),
    }));
    await createBackup({ provider, keyring, records: input, sequence: 1 });

    const sink = collect();
    await restoreBackup({ provider, unlock: { passkey: web.prf(ceremony) }, sink });
    expect(sink.committed).toBe(true);
    expect(
      Buffer.concat(sink.records.map((r) => r.value)).equals(
        Buffer.concat(input.map((r) => r.value)),
      ),
    ).toBe(true);

    // A slot this passkey's PRF output does not open (wrapped under another secret): WrongKey.
    const forged = addPasskeySlot(createKeyring(), { ...enrolled, prfOutput: randomBytes(32) });
    const forgedAt = createFsProvider({ dir: join(dir, "forged") });
    await createBackup({ provider: forgedAt, keyring: forged, records: input, sequence: 1 });
    const wrong = collect();
    const wrongErr: unknown = await restoreBackup({
      provider: forgedAt,
      unlock: { passkey: web.prf(ceremony) },
      sink: wrong,
    }).catch((e: unknown) => e);
    expect(BackupError.is(wrongErr, "WrongKey")).toBe(true);
    expect(wrong.committed).toBe(false);

    // Another authenticator (another person's passkey) cannot open it; nothing is restored.
    await cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId: first });
    await addAuthenticator();
    const other = collect();
    const err: unknown = await restoreBackup({
      provider,
      unlock: { passkey: web.prf(ceremony) },
      sink: other,
    }).catch((e: unknown) => e);
    expect(BackupError.is(err, "PasskeyFailed")).toBe(true);
    expect(other.committed).toBe(false);
    keyring = { key: keyring.key, slots: keyring.slots };
    expect(keyring.slots.length).toBe(2);
  });
});
