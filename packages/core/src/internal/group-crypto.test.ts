import { describe, expect, it } from "vitest";
import { CoreError } from "./errors.ts";
import { GroupCrypto } from "./group-crypto.ts";
import {
  KeyDirectory,
  createTestDevice,
  text,
  untext,
  type TestDevice,
} from "../../test/support.ts";

/** Delivers our sender key to the devices that miss it over pairwise sessions, as a client does. */
async function distribute(
  from: TestDevice,
  group: GroupCrypto,
  groupId: string,
  members: TestDevice[],
  keys: KeyDirectory,
  groups: Map<TestDevice, GroupCrypto>,
) {
  const dist = await group.prepare(
    groupId,
    members.map((m) => m.address),
  );
  for (const to of dist.to) {
    const member = members.find(
      (m) => m.address.accountId === to.accountId && m.address.deviceId === to.deviceId,
    )!;
    const bundle = from.crypto.hasSession(to) ? undefined : keys.bundle(to);
    const [ct] = await from.crypto.encrypt(
      [
        {
          address: to,
          identityPublic: member.crypto.identityPublic,
          ...(bundle ? { bundle } : {}),
        },
      ],
      dist.message,
    );
    const skdm = await member.crypto.decrypt(from.address, ct!, (p) => p);
    await groups.get(member)!.processDistribution(from.address, skdm);
  }
  await group.markDistributed(groupId, dist.to);
  return dist;
}

describe("groups with Sender Keys", () => {
  it("distributes once, encrypts once, and rotates after a removal so the removed device cannot read on", async () => {
    const keys = new KeyDirectory();
    const alice = createTestDevice({ accountId: "alice", deviceId: 1 }, keys);
    const bob1 = createTestDevice({ accountId: "bob", deviceId: 1 }, keys);
    const bob2 = createTestDevice({ accountId: "bob", deviceId: 2 }, keys);
    const carol = createTestDevice({ accountId: "carol", deviceId: 1 }, keys);
    const all = [alice, bob1, bob2, carol];
    const groups = new Map(all.map((d) => [d, new GroupCrypto(d.crypto)]));
    const ga = groups.get(alice)!;

    const first = await distribute(alice, ga, "g1", all, keys, groups);
    expect(first.to).toHaveLength(3);
    const m1 = await ga.encrypt("g1", text("hello group"));
    for (const d of [bob1, bob2, carol])
      expect(untext(await groups.get(d)!.decrypt(alice.address, m1.body))).toBe("hello group");

    // Nobody new: nothing to distribute, same key.
    const again = await ga.prepare(
      "g1",
      all.map((d) => d.address),
    );
    expect(again.to).toEqual([]);
    expect(again.distributionId).toBe(first.distributionId);

    // Carol leaves: rotate, distribute to the rest only.
    await ga.rotate("g1");
    const remaining = [alice, bob1, bob2];
    const second = await distribute(alice, ga, "g1", remaining, keys, groups);
    expect(second.distributionId).not.toBe(first.distributionId);
    expect(second.to.map((a) => `${a.accountId}.${a.deviceId}`).sort()).toEqual(["bob.1", "bob.2"]);
    const m2 = await ga.encrypt("g1", text("after carol left"));
    for (const d of [bob1, bob2])
      expect(untext(await groups.get(d)!.decrypt(alice.address, m2.body))).toBe("after carol left");
    const err = await groups
      .get(carol)!
      .decrypt(alice.address, m2.body)
      .catch((e: unknown) => e);
    expect(CoreError.is(err)).toBe(true);
  });

  it("refuses garbage distribution messages and ciphertexts with CoreError", async () => {
    const keys = new KeyDirectory();
    const bob = createTestDevice({ accountId: "bob", deviceId: 1 }, keys);
    const g = new GroupCrypto(bob.crypto);
    const sender = { accountId: "alice", deviceId: 1 };
    for (const bad of [new Uint8Array(0), text("nope"), new Uint8Array(200).fill(7)]) {
      expect(CoreError.is(await g.processDistribution(sender, bad).catch((e: unknown) => e))).toBe(
        true,
      );
      expect(CoreError.is(await g.decrypt(sender, bad).catch((e: unknown) => e))).toBe(true);
    }
    expect(bob.store.count("sender-key")).toBe(0);
  });
});
