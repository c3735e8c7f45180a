import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveConfig } from "../config.ts";
import { startServer, type RunningServer } from "../server.ts";

const dir = mkdtempSync(join(tmpdir(), "pairwise-vault-http-"));
let server: RunningServer;
let base: string;
beforeAll(async () => {
  server = await startServer({
    config: resolveConfig({ dataDir: dir, host: "127.0.0.1", port: 0, logLevel: "silent" }),
    logger: pino({ level: "silent" }),
  });
  base = `http://127.0.0.1:${String(server.port)}/backup-vault/v1/`;
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function post(route: string, body: string): Promise<[number, unknown]> {
  const res = await fetch(base + route, { method: "POST", body });
  return [res.status, await res.json()];
}

describe("backup key vault HTTP API", () => {
  it("refuses malformed, unknown and oversized requests with typed errors", async () => {
    expect(await post("login/start", "not json")).toEqual([400, { error: "InvalidRequest" }]);
    expect(await post("login/start", JSON.stringify({ vaultId: "zz" }))).toEqual([
      400,
      { error: "InvalidRequest" },
    ]);
    expect(await post("nope", "{}")).toEqual([404, { error: "NotFound" }]);
    expect(await post("login/start", "x".repeat(20_000))).toEqual([
      413,
      { error: "PayloadTooLarge" },
    ]);
    const res = await fetch(`${base}login/start`);
    expect(res.status).toBe(400);
  });

  it("answers NotFound for an unknown record and an unknown login", async () => {
    const vaultId = "0".repeat(32);
    expect(
      await post("login/start", JSON.stringify({ vaultId, startLoginRequest: "AAAA" })),
    ).toEqual([404, { error: "NotFound" }]);
    expect(
      await post("login/finish", JSON.stringify({ loginId: vaultId, finishLoginRequest: "AAAA" })),
    ).toEqual([404, { error: "NotFound" }]);
  });

  it("refuses an undecodable OPAQUE message without storing anything", async () => {
    const vaultId = "1".repeat(32);
    expect(
      await post("register/start", JSON.stringify({ vaultId, registrationRequest: "AAAA" })),
    ).toEqual([400, { error: "InvalidRequest" }]);
  });
});
