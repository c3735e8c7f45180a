import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { PairwiseDevice } from "@pairwise/client";
import { describe, expect, it } from "vitest";
import { account, home, useRelay } from "./support.ts";

const relay = useRelay();
const fixture = resolve(import.meta.dirname, "../fixtures/crash-after-file-stored.ts");

describe("a client killed between storing a file message and downloading the file", () => {
  it("downloads the file and shows the message once after it restarts", async () => {
    const sender = await account(relay(), "sender");
    const receiverHome = home("receiver");
    const receiver = await account(relay(), "receiver", receiverHome);
    await receiver.close();
    const path = join(home("file"), "note.txt");
    writeFileSync(path, "kept across a crash\n");
    const id = await sender.sendFile("receiver", path);

    // The receiver's own process kills itself right after the message is stored.
    const child = spawn(process.execPath, ["--import", "tsx", fixture], {
      cwd: resolve(import.meta.dirname, "../../.."),
      env: { ...process.env, PAIRWISE_HOME: receiverHome },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let shownBefore = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (shownBefore += c));
    const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const signal = await new Promise((r) => child.once("exit", (_code, s) => r(s)));
    clearTimeout(guard);
    expect(signal).toBe("SIGKILL");
    expect(shownBefore).toBe("");

    // Restart: the message is shown exactly once, with the file in place.
    const again = PairwiseDevice.open({ home: receiverHome, timeoutMs: 15_000 });
    const shown: string[] = [];
    again.on("message", (m) => shown.push(m.id));
    await again.connect();
    await again.startReceiving();
    await again.drained(30_000);
    expect(shown).toEqual([id]);
    const [stored] = again.history("sender");
    expect(stored?.id).toBe(id);
    expect(readFileSync(String(stored?.file), "utf8")).toBe("kept across a crash\n");
    await again.close();
    await sender.close();
  }, 90_000);
});
