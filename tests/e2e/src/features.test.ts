import { createHash, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  ClientError,
  PairwiseDevice,
  acceptNewKey,
  securityCode,
  verifyContact,
} from "@pairwise/client";
import { describe, expect, it } from "vitest";
import { account, home, link, until, useRelay } from "./support.ts";

const relay = useRelay();

describe("client features end to end", () => {
  it("linking brings the primary's recent history to the new companion", async () => {
    const erin = await account(relay(), "erin");
    const fred = await account(relay(), "fred");
    await fred.startReceiving();
    await erin.startReceiving();
    await erin.sendText("fred", "first");
    await until(() => fred.history("erin").length === 1);
    await fred.sendText("erin", "second");
    await until(() => erin.history("fred").length === 2);
    const tablet = await link(relay(), erin, "tablet");
    const failures: string[] = [];
    tablet.on("decrypt-failed", (f) => failures.push(f.code));
    tablet.on("untrusted-device", (f) => failures.push(`untrusted ${f.from.deviceId}`));
    await tablet.startReceiving();
    await tablet.drained();
    expect(failures).toEqual([]);
    await until(() => tablet.history("fred").length === 2);
    expect(tablet.history("fred").map((m) => [m.text, m.outgoing])).toEqual([
      ["first", true],
      ["second", false],
    ]);
    for (const d of [erin, fred, tablet]) await d.close();
  });

  it("a 10 MB file arrives byte-identical on every device of the recipient", async () => {
    const gail = await account(relay(), "gail");
    const hugo = await account(relay(), "hugo");
    const hugo2 = await link(relay(), hugo, "hugo-laptop");
    const dir = home("files");
    const path = join(dir, "big.bin");
    const data = randomBytes(10 * 1024 * 1024);
    writeFileSync(path, data);
    await gail.sendFile("hugo", path);
    for (const d of [hugo, hugo2]) {
      await d.startReceiving();
      await until(() => d.history("gail").some((m) => m.file !== undefined), 30_000);
      await d.drained(30_000);
      const file = d.history("gail").find((m) => m.file)!.file!;
      expect(createHash("sha256").update(readFileSync(file)).digest("hex")).toBe(
        createHash("sha256").update(data).digest("hex"),
      );
    }
    for (const d of [gail, hugo, hugo2]) await d.close();
  }, 90_000);

  it("security codes match on both sides, survive linking a companion, and change when an account registers anew", async () => {
    const ivy = await account(relay(), "ivy");
    const jack = await account(relay(), "jack");
    await ivy.sendText("jack", "hi");
    await jack.startReceiving();
    await until(() => jack.history("ivy").length === 1);
    const a = await securityCode(ivy, "jack");
    const b = await securityCode(jack, "ivy");
    expect(a.digits).toMatch(/^\d{60}$/);
    expect(a.display).toBe(b.display);
    await verifyContact(ivy, "jack", b.display);
    const wrong = await verifyContact(ivy, "jack", "0".repeat(60)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(ClientError.is(wrong, "UntrustedContact")).toBe(true);
    const jack2 = await link(relay(), jack, "jack-laptop");
    expect((await securityCode(ivy, "jack")).digits).toBe(a.digits);
    // While the account exists nobody else can take its name.
    const other = PairwiseDevice.open({ home: home("jack-again"), timeoutMs: 15_000 });
    const taken = await other.register({ server: { url: relay().url }, accountId: "jack" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(ClientError.is(taken, "ServerRefused")).toBe(true);
    // Jack deletes his account and registers anew: a new account key. Ivy is told, trusts
    // nothing of the new account until she accepts it, and then the code is different.
    const removed: string[] = [];
    jack2.on("connection", (c) => removed.push(c.state));
    await jack2.startReceiving();
    await jack.deleteAccount();
    await until(() => removed.includes("logged-out"));
    await jack.close();
    await jack2.close();
    await other.register({ server: { url: relay().url }, accountId: "jack" });
    const changed: string[] = [];
    ivy.on("account-key-changed", (e) => changed.push(e.accountId));
    const refused = await ivy.sendText("jack", "are you still you?").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(changed).toEqual(["jack"]);
    expect(ClientError.is(refused, "UntrustedContact")).toBe(true);
    expect((await securityCode(ivy, "jack")).digits).toBe(a.digits);
    acceptNewKey(ivy, "jack");
    const after = await securityCode(ivy, "jack");
    expect(after.digits).not.toBe(a.digits);
    expect(after.display).toBe((await securityCode(other, "ivy")).display);
    await other.close();
    await ivy.close();
  });
});
