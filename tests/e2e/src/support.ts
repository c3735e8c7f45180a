// Shared set-up of the end-to-end tests: a real relay on a loopback port (SQLite in a temp dir)
// and devices with their own home directories.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PairwiseDevice, approveLink, linkAsCompanion } from "@pairwise/client";
import { resolveConfig, startServer, type RunningServer } from "@pairwise/server";
import pino from "pino";
import { afterAll, beforeAll } from "vitest";

/** A fresh temp directory (a device home, a server data dir). */
export const home = (name: string) => mkdtempSync(join(tmpdir(), `pairwise-e2e-${name}-`));

/** Polls `ok` until it holds, failing after `ms`. */
export async function until(ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts a relay on 127.0.0.1 (port 0: the OS chooses) with its data in `dataDir`. */
export function startRelay(dataDir = home("server"), port = 0): Promise<RunningServer> {
  return startServer({
    config: resolveConfig({ dataDir, host: "127.0.0.1", port, logLevel: "silent" }),
    logger: pino({ level: "silent" }),
  });
}

/** One relay for the whole test file; read it inside tests. */
export function useRelay(): () => RunningServer {
  let server: RunningServer | undefined;
  beforeAll(async () => {
    server = await startRelay();
  });
  afterAll(async () => {
    await server?.close();
  });
  return () => {
    if (!server) throw new Error("relay not started");
    return server;
  };
}

/** A new account whose primary is a new device. */
export async function account(
  server: RunningServer,
  name: string,
  dir = home(name),
): Promise<PairwiseDevice> {
  const d = PairwiseDevice.open({ home: dir, timeoutMs: 15_000 });
  await d.register({ server: { url: server.url }, accountId: name });
  return d;
}

/** A new companion of `primary`'s account, linked by link code and approved. */
export async function link(
  server: RunningServer,
  primary: PairwiseDevice,
  name: string,
): Promise<PairwiseDevice> {
  const d = PairwiseDevice.open({ home: home(name), timeoutMs: 15_000 });
  let code: string | undefined;
  const linked = linkAsCompanion(d, {
    server: { url: server.url },
    deviceName: name,
    timeoutMs: 15_000,
    onLinkCode: (u) => (code ??= u),
  });
  await until(() => code !== undefined);
  if (code === undefined) throw new Error("no link code");
  await approveLink(primary, code, () => Promise.resolve(true));
  await linked;
  return d;
}
