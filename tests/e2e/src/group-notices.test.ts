import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  PairwiseDevice,
  createGroup,
  listGroups,
  updateGroup,
  type GroupNotice,
} from "@pairwise/client";
import { EnvelopeSchema, GroupNoticeSchema } from "@pairwise/core/relay-proto";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { account, home, startRelay, until, useRelay } from "./support.ts";

const relay = useRelay();

describe("group membership notices", () => {
  it("a member offline when added learns of the group on reconnect, and of its removal", async () => {
    const alice = await account(relay(), "gn-alice");
    const bobHome = home("gn-bob");
    const first = await account(relay(), "gn-bob", bobHome);
    await first.close();

    // Bob is offline: the notice waits in his queue.
    const group = await createGroup(alice, "offline team", ["gn-bob"]);

    const bob = PairwiseDevice.open({ home: bobHome, timeoutMs: 15_000 });
    const notices: GroupNotice[] = [];
    const failures: string[] = [];
    bob.on("group", (n) => notices.push(n));
    bob.on("decrypt-failed", (f) => failures.push(f.code));
    await bob.connect();
    await bob.startReceiving();
    await bob.drained();
    expect(notices).toEqual([
      {
        groupId: group.id,
        name: "offline team",
        revision: 1,
        members: ["gn-alice", "gn-bob"],
        added: ["gn-alice", "gn-bob"],
        removed: [],
        by: "gn-alice",
        timestamp: expect.any(Number) as number,
      },
    ]);
    expect(listGroups(bob)).toEqual([
      { id: group.id, name: "offline team", members: ["gn-alice", "gn-bob"], revision: 1 },
    ]);

    // Online now: the removal arrives as it happens.
    await updateGroup(alice, group.id, { remove: ["gn-bob"] });
    await until(() => notices.length === 2);
    expect(notices[1]).toMatchObject({
      groupId: group.id,
      revision: 2,
      members: ["gn-alice"],
      added: [],
      removed: ["gn-bob"],
      by: "gn-alice",
    });
    expect(listGroups(bob)).toEqual([
      { id: group.id, name: "offline team", members: ["gn-alice"], revision: 2 },
    ]);
    expect(failures).toEqual([]);

    // Acknowledged after storing: a restart does not bring the notices again.
    await bob.close();
    const again = PairwiseDevice.open({ home: bobHome, timeoutMs: 15_000 });
    const later: GroupNotice[] = [];
    again.on("group", (n) => later.push(n));
    await again.connect();
    await again.startReceiving();
    await again.drained();
    expect(later).toEqual([]);
    expect(listGroups(again).map((g) => g.revision)).toEqual([2]);
    await again.close();
    await alice.close();
  });

  it("the acting device is answered directly; the account's other devices are told", async () => {
    const carl = await account(relay(), "gn-carl");
    const dana = await account(relay(), "gn-dana");
    const carlNotices: GroupNotice[] = [];
    const danaNotices: GroupNotice[] = [];
    carl.on("group", (n) => carlNotices.push(n));
    dana.on("group", (n) => danaNotices.push(n));
    await carl.startReceiving();
    await dana.startReceiving();
    const group = await createGroup(carl, "pair", ["gn-dana"]);
    await updateGroup(carl, group.id, { add: [] });
    await until(() => danaNotices.length === 2);
    expect(danaNotices.map((n) => [n.revision, n.added, n.removed])).toEqual([
      [1, ["gn-carl", "gn-dana"], []],
      [2, [], []],
    ]);
    // Nothing was queued for the device that made the changes: a fresh connection drains empty.
    const carlHome = carl.home;
    await carl.close();
    const carlAgain = PairwiseDevice.open({ home: carlHome, timeoutMs: 15_000 });
    carlAgain.on("group", (n) => carlNotices.push(n));
    await carlAgain.connect();
    await carlAgain.startReceiving();
    await carlAgain.drained();
    expect(carlNotices).toEqual([]);
    await carlAgain.close();
    await dana.close();
  });

  it("a malformed or forged notice is acknowledged and dropped with a warning, changing nothing", async () => {
    const dataDir = home("gn-server");
    const server = await startRelay(dataDir);
    try {
      const eveHome = home("gn-eve");
      const eve = await account(server, "gn-eve", eveHome);
      await eve.close();
      // What a broken or hostile relay path could queue: garbage, a notice that names a sender
      // (as a device's envelope would), and an inconsistent notice.
      const body = (added: string[]) =>
        toBinary(
          GroupNoticeSchema,
          create(GroupNoticeSchema, {
            groupId: "forgedgroup1",
            revision: 5n,
            name: "forged",
            members: ["gn-eve"],
            added,
            by: "gn-mallory",
          }),
        );
      const bad = [
        { type: 4, body: new Uint8Array([0xff, 0x01]) },
        { type: 4, senderAccount: "gn-mallory", senderDevice: 1, body: body(["gn-eve"]) },
        { type: 4, body: body(["gn-nobody"]) },
      ].map((e) => toBinary(EnvelopeSchema, create(EnvelopeSchema, e)));
      const db = new Database(join(dataDir, "relay.db"));
      const dev = db
        .prepare<[string], { dev: number }>(
          "SELECT dev FROM devices WHERE account_id = ? AND device_id = 1",
        )
        .get("gn-eve")?.dev;
      expect(dev).toBeDefined();
      const insert = db.prepare<[number, Uint8Array, number, number]>(
        "INSERT INTO queue (dev, envelope, enqueued_at, expires_at) VALUES (?, ?, ?, ?)",
      );
      for (const e of bad) insert.run(dev ?? 0, e, Date.now(), Date.now() + 60_000);
      const queued = db.prepare<[number], { n: number }>(
        "SELECT count(*) AS n FROM queue WHERE dev = ?",
      );
      expect(queued.get(dev ?? 0)?.n).toBe(3);

      const again = PairwiseDevice.open({ home: eveHome, timeoutMs: 15_000 });
      const notices: GroupNotice[] = [];
      const failures: string[] = [];
      again.on("group", (n) => notices.push(n));
      again.on("decrypt-failed", (f) => failures.push(f.code));
      await again.connect();
      await again.startReceiving();
      await again.drained();
      expect(failures).toEqual(["ProtocolError", "ProtocolError", "ProtocolError"]);
      expect(notices).toEqual([]);
      expect(listGroups(again)).toEqual([]);
      await again.close(); // flushes the acknowledgements
      await until(() => queued.get(dev ?? 0)?.n === 0);
      db.close();
    } finally {
      await server.close();
    }
  });
});
