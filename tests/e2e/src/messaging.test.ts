import { PairwiseDevice, type StoredMessage } from "@pairwise/client";
import { describe, expect, it } from "vitest";
import { account, home, useRelay } from "./support.ts";

const relay = useRelay();

describe("client devices through a real relay", () => {
  it("two accounts exchange end-to-end encrypted messages, stored before they are acknowledged", async () => {
    const alice = await account(relay(), "alice");
    const bob = await account(relay(), "bob");
    const got: StoredMessage[] = [];
    bob.on("message", (m) => got.push(m));
    await bob.startReceiving();
    const id = await alice.sendText("bob", "hello bob");
    await bob.drained();
    for (let i = 0; i < 50 && got.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
    expect(got.map((m) => [m.id, m.text, m.fromAccount])).toEqual([[id, "hello bob", "alice"]]);
    expect(bob.history("alice").map((m) => m.text)).toEqual(["hello bob"]);
    expect(alice.history("bob").map((m) => [m.text, m.outgoing])).toEqual([["hello bob", true]]);

    await alice.startReceiving();
    await bob.sendText("alice", "hi alice");
    for (let i = 0; i < 100 && alice.history("bob").length < 2; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(alice.history("bob").map((m) => m.text)).toEqual(["hello bob", "hi alice"]);
    await alice.close();
    await bob.close();
  });

  it("a recipient offline while messages are sent gets them all, in order, after it reopens", async () => {
    const carol = await account(relay(), "carol");
    const daveHome = home("dave");
    const dave = await account(relay(), "dave", daveHome);
    await dave.close();
    for (let i = 0; i < 5; i++) await carol.sendText("dave", `m${i}`);
    const again = PairwiseDevice.open({ home: daveHome, timeoutMs: 10_000 });
    expect(again.identity).toEqual({ accountId: "dave", deviceId: 1 });
    await again.connect();
    await again.startReceiving();
    await again.drained();
    expect(again.history("carol").map((m) => m.text)).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    // Everything was acknowledged: a new connection gets nothing again.
    await again.close();
    const third = PairwiseDevice.open({ home: daveHome, timeoutMs: 10_000 });
    let extra = 0;
    third.on("message", () => extra++);
    await third.connect();
    await third.startReceiving();
    await third.drained();
    expect(extra).toBe(0);
    expect(third.history("carol")).toHaveLength(5);
    await third.close();
    await carol.close();
  });
});
