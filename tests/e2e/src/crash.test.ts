import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { PairwiseDevice } from "@pairwise/client";
import { resolveConfig, startServer } from "@pairwise/server";
import pino from "pino";
import { describe, expect, it } from "vitest";

const home = (name: string) => mkdtempSync(join(tmpdir(), `pairwise-e2e-${name}-`));
const fixture = resolve(import.meta.dirname, "../fixtures/receiver.ts");

describe("a client killed mid-receive", () => {
  it("loses nothing and shows nothing twice after it restarts", async () => {
    const server = await startServer({
      config: resolveConfig({
        dataDir: home("server"),
        host: "127.0.0.1",
        port: 0,
        logLevel: "silent",
      }),
      logger: pino({ level: "silent" }),
    });
    const sender = PairwiseDevice.open({ home: home("sender"), timeoutMs: 15_000 });
    await sender.register({ server: { url: server.url }, accountId: "sender" });
    const receiverHome = home("receiver");
    const receiver = PairwiseDevice.open({ home: receiverHome, timeoutMs: 15_000 });
    await receiver.register({ server: { url: server.url }, accountId: "receiver" });
    await receiver.close();
    const total = 120;
    const sent: string[] = [];
    for (let i = 0; i < total; i++) sent.push(await sender.sendText("receiver", `m${i}`));

    // Run the receiver in its own process and kill it (SIGKILL) once part of the queue is stored.
    const child = spawn(process.execPath, ["--import", "tsx", fixture], {
      cwd: resolve(import.meta.dirname, "../../.."),
      env: { ...process.env, PAIRWISE_HOME: receiverHome },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const killAt = 20 + Math.floor(Math.random() * 60);
    let stored = 0;
    await new Promise<void>((done, fail) => {
      const timer = setTimeout(
        () => fail(new Error("receiver did not store messages in time")),
        30_000,
      );
      createInterface({ input: child.stdout }).on("line", (line) => {
        if (line.startsWith("stored ") && ++stored === killAt) {
          child.kill("SIGKILL");
          clearTimeout(timer);
          done();
        }
      });
    });
    await new Promise((r) => child.once("exit", r));

    // Restart in this process: everything arrives, and nothing twice.
    const again = PairwiseDevice.open({ home: receiverHome, timeoutMs: 15_000 });
    await again.connect();
    await again.startReceiving();
    await again.drained(30_000);
    const history = again.history("sender");
    expect(history.map((m) => m.id).sort()).toEqual([...sent].sort());
    expect(new Set(history.map((m) => m.id)).size).toBe(total);
    await again.close();
    await sender.close();
    await server.close();
  }, 90_000);
});
