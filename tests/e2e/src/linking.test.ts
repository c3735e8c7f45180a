import {
  ClientError,
  PairwiseDevice,
  approveLink,
  linkAsCompanion,
  unlinkDevice,
} from "@pairwise/client";
import { describe, expect, it } from "vitest";
import { home, until, useRelay } from "./support.ts";

const relay = useRelay();

describe("linking companions", () => {
  it("links a companion by link code, fans out to it with sync copies, and unlinks it", async () => {
    const alice = PairwiseDevice.open({ home: home("alice"), timeoutMs: 10_000 });
    await alice.register({ server: { url: relay().url }, accountId: "alice" });
    const bob = PairwiseDevice.open({ home: home("bob"), timeoutMs: 10_000 });
    await bob.register({ server: { url: relay().url }, accountId: "bob" });

    const laptop = PairwiseDevice.open({ home: home("laptop"), timeoutMs: 10_000 });
    let code: string | undefined;
    const linked = linkAsCompanion(laptop, {
      server: { url: relay().url },
      deviceName: "laptop",
      timeoutMs: 10_000,
      onLinkCode: (uri) => (code ??= uri),
    });
    await until(() => code !== undefined);
    expect(code).toMatch(/^pairwise:\/\/link\?v=1&/);
    const seen: number[] = [];
    const approved = await approveLink(alice, code!, (req) => {
      seen.push(req.identityKey.length);
      return Promise.resolve(true);
    });
    expect(await linked).toEqual({ accountId: "alice", deviceId: approved.deviceId });
    expect(seen).toEqual([33]);
    expect((await alice.devices()).map((d) => [d.id, d.name])).toEqual([
      [1, "primary"],
      [approved.deviceId, "laptop"],
    ]);

    for (const d of [alice, laptop]) await d.startReceiving();
    await bob.sendText("alice", "to both of you");
    await until(() => alice.history("bob").length === 1 && laptop.history("bob").length === 1);
    await alice.sendText("bob", "from my phone");
    await until(() => laptop.history("bob").length === 2);
    expect(laptop.history("bob").map((m) => [m.text, m.outgoing, m.sync])).toEqual([
      ["to both of you", false, false],
      ["from my phone", true, true],
    ]);

    await unlinkDevice(alice, approved.deviceId);
    await bob.sendText("alice", "after unlink");
    await until(() => alice.history("bob").length === 3);
    await new Promise((r) => setTimeout(r, 200));
    expect(laptop.history("bob")).toHaveLength(2);
    // The unlinked device can no longer act on the server.
    const err = await laptop.sendText("bob", "still here?").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(ClientError.is(err)).toBe(true);
    for (const d of [alice, bob, laptop]) await d.close();
  });

  it("refuses a link the user did not confirm, and a garbage link code", async () => {
    const carol = PairwiseDevice.open({ home: home("carol"), timeoutMs: 10_000 });
    await carol.register({ server: { url: relay().url }, accountId: "carol" });
    const tablet = PairwiseDevice.open({ home: home("tablet"), timeoutMs: 10_000 });
    let code: string | undefined;
    const linked = linkAsCompanion(tablet, {
      server: { url: relay().url },
      deviceName: "tablet",
      timeoutMs: 1500,
      onLinkCode: (uri) => (code ??= uri),
    });
    await until(() => code !== undefined);
    const refused = await approveLink(carol, code!, () => Promise.resolve(false)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(ClientError.is(refused, "LinkFailed")).toBe(true);
    const timeout = await linked.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(ClientError.is(timeout, "Timeout")).toBe(true);
    const garbage = await approveLink(carol, "pairwise://link?v=1&ref=x", () =>
      Promise.resolve(true),
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(ClientError.is(garbage, "InvalidArgument")).toBe(true);
    await carol.close();
    await tablet.close();
  });
});
