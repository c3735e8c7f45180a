import { PairwiseDevice } from "@pairwise/client";
import { describe, expect, it } from "vitest";
import { account, home, until, useRelay } from "./support.ts";

const relay = useRelay();

describe("history order", () => {
  it("messages sent within one millisecond keep their order on both sides", async () => {
    // The sender's clock stands still: every message is sent "within the same millisecond".
    const frozen = Date.now();
    const sender = PairwiseDevice.open({
      home: home("quick"),
      timeoutMs: 15_000,
      now: () => frozen,
    });
    await sender.register({ server: { url: relay().url }, accountId: "quick" });
    const receiver = await account(relay(), "patient");
    await receiver.startReceiving();
    const texts = Array.from({ length: 20 }, (_, i) => `n${String(i)}`);
    const ids: string[] = [];
    for (const t of texts) ids.push(await sender.sendText("patient", t));
    await until(() => receiver.history("quick").length === texts.length);
    expect(receiver.history("quick").map((m) => m.id)).toEqual(ids);
    expect(sender.history("patient").map((m) => m.id)).toEqual(ids);
    const stamps = receiver.history("quick").map((m) => m.timestamp);
    expect(stamps.every((t, i) => i === 0 || t > (stamps[i - 1] ?? 0))).toBe(true);
    await sender.close();
    await receiver.close();
  });
});
