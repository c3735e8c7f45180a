import {
  PairwiseDevice,
  approveLink,
  findMessage,
  linkAsCompanion,
  markRead,
} from "@pairwise/client";
import { describe, expect, it } from "vitest";
import { home, until, useRelay } from "./support.ts";

const relay = useRelay();

describe("receipts and warnings", () => {
  it("marks an outgoing message delivered, then read", async () => {
    const pam = PairwiseDevice.open({ home: home("pam"), timeoutMs: 15_000 });
    await pam.register({ server: { url: relay().url }, accountId: "pam" });
    const quinn = PairwiseDevice.open({ home: home("quinn"), timeoutMs: 15_000 });
    await quinn.register({ server: { url: relay().url }, accountId: "quinn" });
    for (const d of [pam, quinn]) await d.startReceiving();
    const id = await pam.sendText("quinn", "did you get this?");
    expect(findMessage(pam.store, id)?.status ?? "sent").toBe("sent");
    await until(() => findMessage(pam.store, id)?.status === "delivered");
    expect(await markRead(quinn, "pam")).toBe(1);
    await until(() => findMessage(pam.store, id)?.status === "read");
    expect(await markRead(quinn, "pam")).toBe(0);
    for (const d of [pam, quinn]) await d.close();
  });

  it("a companion warns from day 12 without its primary", async () => {
    const rob = PairwiseDevice.open({ home: home("rob"), timeoutMs: 15_000 });
    await rob.register({ server: { url: relay().url }, accountId: "rob" });
    let clock = Date.now();
    const tab = PairwiseDevice.open({ home: home("rob-tab"), timeoutMs: 15_000, now: () => clock });
    let code: string | undefined;
    const linked = linkAsCompanion(tab, {
      server: { url: relay().url },
      deviceName: "tab",
      timeoutMs: 15_000,
      onLinkCode: (u) => (code ??= u),
    });
    await until(() => code !== undefined);
    await approveLink(rob, code!, () => Promise.resolve(true));
    await linked;
    await rob.close();
    const warnings: number[] = [];
    tab.on("warning", (w) => warnings.push(w.days));
    expect(await tab.checkPrimaryOnline()).toBeLessThan(1);
    clock += 12.5 * 24 * 60 * 60 * 1000;
    expect(Math.floor((await tab.checkPrimaryOnline())!)).toBe(12);
    expect(warnings).toEqual([12]);
    await tab.close();
  });
});
