import {
  PairwiseDevice,
  approveLink,
  createGroup,
  linkAsCompanion,
  sendGroupText,
  updateGroup,
} from "@pairwise/client";
import { describe, expect, it } from "vitest";
import { account, home, until, useRelay } from "./support.ts";

const relay = useRelay();

describe("groups with Sender Keys", () => {
  it("every member device gets each group message once; after a removal the removed member gets nothing new and the sender key rotates", async () => {
    const kim = await account(relay(), "kim");
    const leo = await account(relay(), "leo");
    const mia = await account(relay(), "mia");
    const leo2 = PairwiseDevice.open({ home: home("leo2"), timeoutMs: 15_000 });
    let code: string | undefined;
    const linked = linkAsCompanion(leo2, {
      server: { url: relay().url },
      deviceName: "leo2",
      timeoutMs: 15_000,
      onLinkCode: (u) => (code ??= u),
    });
    await until(() => code !== undefined);
    await approveLink(leo, code!, () => Promise.resolve(true));
    await linked;
    const all = [kim, leo, mia, leo2];
    for (const d of all) await d.startReceiving();

    const group = await createGroup(kim, "team", ["leo", "mia"]);
    const chat = `group:${group.id}`;
    await sendGroupText(kim, group.id, "hello team");
    for (const d of [leo, mia, leo2]) await until(() => d.history(chat).length === 1);
    await sendGroupText(leo, group.id, "hi from leo");
    for (const d of [kim, mia]) await until(() => d.history(chat).length === 2);
    await until(() => leo2.history(chat).length === 2);
    expect(leo2.history(chat).map((m) => [m.text, m.fromAccount])).toEqual([
      ["hello team", "kim"],
      ["hi from leo", "leo"],
    ]);

    const distributionBefore = kim.crypto.state.getGroupSenderState(group.id)?.distributionId;
    await updateGroup(kim, group.id, { remove: ["mia"] });
    await sendGroupText(kim, group.id, "without mia");
    for (const d of [leo, leo2]) await until(() => d.history(chat).length === 3);
    await new Promise((r) => setTimeout(r, 200));
    expect(mia.history(chat)).toHaveLength(2);
    expect(kim.crypto.state.getGroupSenderState(group.id)?.distributionId).not.toEqual(
      distributionBefore,
    );
    for (const d of all) await d.close();
  });
});
