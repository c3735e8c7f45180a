import { PairwiseDevice, expectResult } from "@pairwise/client";
import { describe, expect, it } from "vitest";
import { account, home, link, startRelay, until } from "./support.ts";

const start = (dataDir: string, port = 0) => startRelay(dataDir, port);

describe("multi-device delivery and resilience", () => {
  it("alice (3 devices), bob (2) and carol (1): every message reaches every intended device exactly once, with sync copies", async () => {
    const server = await start(home("server"));
    const alice = await account(server, "alice");
    const [alice2, alice3] = [
      await link(server, alice, "alice2"),
      await link(server, alice, "alice3"),
    ];
    const bob = await account(server, "bob");
    const bob2 = await link(server, bob, "bob2");
    const carol = await account(server, "carol");
    const all = [alice, alice2, alice3, bob, bob2, carol];
    const received = new Map<PairwiseDevice, string[]>(all.map((d) => [d, []]));
    for (const d of all) {
      d.on("message", (m) =>
        received.get(d)!.push(`${m.chat}:${m.text}:${m.sync ? "sync" : "in"}`),
      );
      await d.startReceiving();
    }
    await alice2.sendText("bob", "a2->bob");
    await bob.sendText("alice", "bob->alice");
    await carol.sendText("alice", "carol->alice");
    await alice.sendText("carol", "a1->carol");
    const expected = new Map<PairwiseDevice, string[]>([
      [alice, ["bob:a2->bob:sync", "bob:bob->alice:in", "carol:carol->alice:in"]],
      [alice2, ["bob:bob->alice:in", "carol:carol->alice:in", "carol:a1->carol:sync"]],
      [
        alice3,
        ["bob:a2->bob:sync", "bob:bob->alice:in", "carol:carol->alice:in", "carol:a1->carol:sync"],
      ],
      [bob, ["alice:a2->bob:in"]],
      [bob2, ["alice:a2->bob:in", "alice:bob->alice:sync"]],
      [carol, ["alice:a1->carol:in"]],
    ]);
    for (const [d, want] of expected) await until(() => received.get(d)!.length >= want.length);
    await new Promise((r) => setTimeout(r, 300));
    for (const [d, want] of expected) expect(received.get(d)!.sort()).toEqual([...want].sort());
    for (const d of all) await d.close();
    await server.close();
  }, 60_000);

  it("reconnects with backoff after the server restarts and receives what was sent meanwhile", async () => {
    const dataDir = home("server");
    let server = await start(dataDir);
    const port = server.port;
    const dan = await account(server, "dan");
    const eve = await account(server, "eve");
    const states: string[] = [];
    eve.on("connection", (s) => states.push(s.state));
    await eve.startReceiving();
    await server.close();
    await until(() => states.includes("disconnected"));
    server = await start(dataDir, port);
    await dan.close();
    const dan2 = PairwiseDevice.open({ home: dan.home, timeoutMs: 15_000 });
    await dan2.connect();
    await dan2.sendText("eve", "after the restart");
    await until(() => eve.history("dan").length === 1);
    expect(states.filter((s) => s === "connected").length).toBeGreaterThanOrEqual(1);
    for (const d of [dan2, eve]) await d.close();
    await server.close();
  }, 60_000);

  it("refills one-time prekeys early when the server runs low", async () => {
    const server = await start(home("server"));
    const fay = await account(server, "fay");
    const gus = await account(server, "gus");
    await gus.startReceiving();
    const conn = fay.requireConnection();
    for (let i = 0; i < 85; i++)
      await conn.request({
        case: "fetchPrekeyBundles",
        value: { accountId: "gus", deviceIds: [1] },
      });
    const count = async () =>
      expectResult(
        await gus.requireConnection().request({ case: "getPrekeyCount", value: {} }),
        "prekeyCount",
      ).prekeys;
    const deadline = Date.now() + 10_000;
    while ((await count()) < 20 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    // 85 of the 100 uploaded were handed out; the refill came when fewer than 20 were left.
    expect(await count()).toBeGreaterThanOrEqual(80);
    for (const d of [fay, gus]) await d.close();
    await server.close();
  });
});
