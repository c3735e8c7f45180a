// PairwiseDevice.setInboundHandler: a message is acknowledged only after its handler resolved;
// until then it is kept in a durable inbox that survives a restart, and the server's redelivery
// is not handed over twice. Also: sendText with a caller-chosen message id.
import { PairwiseDevice, type StoredMessage } from "@pairwise/client";
import { describe, expect, it } from "vitest";
import { account, home, until, useRelay } from "./support.ts";

const relay = useRelay();

describe("inbound handler", () => {
  it("keeps a message unacknowledged and in the inbox until handled, across a restart", async () => {
    const sender = await account(relay(), "ih-sender");
    const dir = home("ih-receiver");
    const receiver = await account(relay(), "ih-receiver", dir);
    const handed: StoredMessage[] = [];
    let finish: (() => void) | undefined;
    receiver.setInboundHandler((m) => {
      handed.push(m);
      // The first message is never finished in this run (as if the process died mid-handling).
      if (handed.length === 1) return new Promise<void>(() => undefined);
      return new Promise<void>((r) => (finish = r));
    });
    await receiver.startReceiving();
    const first = await sender.sendText("ih-receiver", "one");
    const second = await sender.sendText("ih-receiver", "two");
    await until(() => handed.length === 2 && finish !== undefined);
    expect(receiver.unhandledMessages().map((m) => m.id)).toEqual([first, second]);
    finish?.();
    await until(() => receiver.unhandledMessages().length === 1);
    expect(receiver.unhandledMessages()[0]?.text).toBe("one");
    await receiver.close();

    // Restarted: the first message is still in the inbox; the server redelivers it (it was never
    // acknowledged) but it is not handed over again; the second was acknowledged.
    const again = PairwiseDevice.open({ home: dir, timeoutMs: 15_000 });
    const handedAgain: StoredMessage[] = [];
    again.setInboundHandler((m) => {
      handedAgain.push(m);
      return Promise.resolve();
    });
    await again.connect();
    expect(again.unhandledMessages().map((m) => m.id)).toEqual([first]);
    await again.startReceiving();
    await again.drained();
    expect(handedAgain).toEqual([]);
    again.markHandled(first);
    expect(again.unhandledMessages()).toEqual([]);
    const third = await sender.sendText("ih-receiver", "three", { messageId: "fixed-id-3" });
    expect(third).toBe("fixed-id-3");
    await until(() => handedAgain.length === 1);
    expect(handedAgain[0]?.id).toBe("fixed-id-3");
    // A re-send with the same id is absorbed by the receiver's deduplication.
    await sender.sendText("ih-receiver", "three again", { messageId: "fixed-id-3" });
    await sender.sendText("ih-receiver", "four");
    await until(() => handedAgain.length === 2);
    expect(handedAgain.map((m) => m.text)).toEqual(["three", "four"]);
    await until(() => again.unhandledMessages().length === 0);
    await again.close();
    await sender.close();
  });
});
