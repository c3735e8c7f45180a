import { PairwiseDevice, requestRetry } from "@pairwise/client";
import { describe, expect, it } from "vitest";
import { home, until, useRelay } from "./support.ts";

const relay = useRelay();

describe("retry receipts", () => {
  it("a deliberately broken session recovers: the recipient asks again and the sender re-encrypts from its outbox", async () => {
    const nora = PairwiseDevice.open({ home: home("nora"), timeoutMs: 15_000 });
    await nora.register({ server: { url: relay().url }, accountId: "nora" });
    const omar = PairwiseDevice.open({ home: home("omar"), timeoutMs: 15_000 });
    await omar.register({ server: { url: relay().url }, accountId: "omar" });
    for (const d of [nora, omar]) await d.startReceiving();
    await nora.sendText("omar", "before");
    await until(() => omar.history("nora").length === 1);
    await omar.sendText("nora", "reply");
    await until(() => nora.history("omar").length === 2);

    // Break Omar's side: he forgets his session with Nora's device, so her next ratchet message
    // cannot be decrypted.
    await omar.crypto.deleteSession({ accountId: "nora", deviceId: 1 });
    const failures: string[] = [];
    omar.on("decrypt-failed", (f) => failures.push(f.code));
    const brokenId = await nora.sendText("omar", "after the break");
    await until(() => omar.history("nora").some((m) => m.text === "after the break"));
    expect(failures.length).toBeGreaterThan(0);
    expect(omar.history("nora").filter((m) => m.text === "after the break")).toHaveLength(1);
    // Both directions work on the new session.
    await omar.sendText("nora", "all good");
    await until(() => nora.history("omar").some((m) => m.text === "all good"));
    // Someone else asking for that message id (a stranger, or a server that saw the id) gets nothing.
    const mallory = PairwiseDevice.open({ home: home("mallory"), timeoutMs: 15_000 });
    await mallory.register({ server: { url: relay().url }, accountId: "mallory" });
    await mallory.startReceiving();
    await requestRetry(mallory, { accountId: "nora", deviceId: 1 }, brokenId);
    await new Promise((r) => setTimeout(r, 500));
    expect(mallory.history("nora")).toEqual([]);
    for (const d of [nora, omar, mallory]) await d.close();
  });
});
