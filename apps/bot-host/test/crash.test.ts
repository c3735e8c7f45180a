// kill -9 in the middle of handling, restart: every message handled, no reply twice, in order.
import { join } from "node:path";
import { approveLink } from "@pairwise/client";
import { describe, expect, it } from "vitest";
import type { BotSnapshot } from "../src/index.ts";
import {
  ADMIN_TOKEN,
  account,
  customer,
  getJson,
  packageRoot,
  spawnHost,
  startRelay,
  tempDir,
  until,
} from "./support.ts";

describe("a bot host killed with SIGKILL mid-handling", () => {
  it("handles every message exactly once after it restarts", async () => {
    const server = await startRelay();
    const owner = await account(server, "crashco");
    const dir = tempDir("crash");
    const config = {
      http: { host: "127.0.0.1", port: 0 },
      adminToken: ADMIN_TOKEN,
      logLevel: "warn",
      bots: [
        {
          name: "crashy",
          server: server.url,
          stateDir: join(dir, "crashy"),
          plugins: [[join(packageRoot, "test/fixtures/two-replies-plugin.mjs"), { pauseMs: 120 }]],
        },
      ],
    };
    const bots = async (url: string) => (await getJson(`${url}/api/bots`)) as BotSnapshot[];

    const first = spawnHost(config, dir);
    const url1 = await first.url;
    await until(async () => (await bots(url1))[0]?.linkCode !== undefined, 60_000, "a link code");
    const code = (await bots(url1))[0]?.linkCode ?? "";
    await approveLink(owner, code, () => Promise.resolve(true), { historySync: false });
    await until(async () => (await bots(url1))[0]?.state === "connected", 60_000, "connected");

    const c = await customer(server, "crash-customer");
    const N = 16;
    const texts = Array.from({ length: N }, (_, i) => `m${String(i)}`);
    for (const t of texts) await c.device.sendText("crashco", t);
    await until(() => c.inbox.length >= 7, 60_000, "some replies before the kill");
    first.child.kill("SIGKILL");
    await first.exited;
    const atKill = c.inbox.length;
    expect(atKill).toBeLessThan(2 * N); // killed mid-stream, not after the end

    const second = spawnHost(config, dir);
    const url2 = await second.url;
    await until(() => c.inbox.length >= 2 * N, 90_000, "every reply after the restart");
    // One more message: per-chat order means everything before it was handled when it is.
    await c.device.sendText("crashco", "last");
    await until(() => c.inbox.length >= 2 * N + 2, 60_000, "the last replies");
    expect(c.inbox.map((m) => m.text)).toEqual(
      [...texts, "last"].flatMap((t) => [`a:${t}`, `b:${t}`]),
    );
    expect(new Set(c.inbox.map((m) => m.id)).size).toBe(c.inbox.length);
    const after = (await bots(url2))[0];
    expect(after?.state).toBe("connected");
    expect(after?.counters.errors).toBe(0);

    // Graceful stop drains and exits 0.
    second.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);
    expect(second.stderr()).not.toMatch(/m\d+/); // no message bodies in the logs
    await c.device.close();
    await owner.close();
    await server.close();
  });
});
