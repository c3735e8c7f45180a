import { describe, expect, it } from "vitest";
import { TransportError } from "./errors.ts";
import { createMemoryPair } from "./memory-pair.ts";

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);

describe("createMemoryPair", () => {
  it("carries frames both ways, in order, and copies them on send", async () => {
    const [a, b] = createMemoryPair();
    const frame = bytes(1, 2, 3);
    await a.send(frame);
    frame[0] = 9;
    await b.send(bytes(4));
    const fromA = b[Symbol.asyncIterator]();
    const fromB = a[Symbol.asyncIterator]();
    expect((await fromA.next()).value).toEqual(bytes(1, 2, 3));
    expect((await fromB.next()).value).toEqual(bytes(4));
    await a.close("bye");
    expect(await fromA.next()).toEqual({ done: true, value: undefined });
    expect(await b.closed).toEqual({ reason: "bye" });
    await expect(b.send(bytes(1))).rejects.toSatisfy((e) => TransportError.is(e, "Closed"));
  });

  it("makes a writer wait while the reader's buffer is full (bounded, not dropped)", async () => {
    const [a, b] = createMemoryPair({ maxBufferedFrames: 4 });
    let sent = 0;
    const writer = (async () => {
      for (let i = 0; i < 20; i++) {
        await a.send(bytes(i));
        sent += 1;
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sent).toBe(4); // four buffered; the fifth send waits for the reader
    const received: number[] = [];
    for await (const frame of b) {
      received.push(frame[0]!);
      if (received.length === 20) break;
    }
    await writer;
    expect(received).toEqual([...Array(20).keys()]);
  });

  it("rejects frames over the limit without closing", async () => {
    const [a, b] = createMemoryPair({ maxFrameBytes: 8 });
    await expect(a.send(new Uint8Array(9))).rejects.toSatisfy((e) =>
      TransportError.is(e, "FrameTooLarge"),
    );
    await a.send(new Uint8Array(8));
    expect((await b[Symbol.asyncIterator]().next()).value).toHaveLength(8);
  });

  it("rejects a waiting send when the transport closes, and a second consumer", async () => {
    const [a, b] = createMemoryPair({ maxBufferedFrames: 1 });
    await a.send(bytes(1));
    const blocked = a.send(bytes(2));
    b[Symbol.asyncIterator]();
    expect(() => b[Symbol.asyncIterator]()).toThrow(/one consumer/);
    await b.close();
    await expect(blocked).rejects.toSatisfy((e) => TransportError.is(e, "Closed"));
  });

  it("closes the transport when the consumer breaks out of the loop", async () => {
    const [a, b] = createMemoryPair();
    await a.send(bytes(1));
    for await (const _frame of b) break;
    expect((await a.closed).reason).toBe("consumer stopped");
  });

  it("refuses out-of-range options", () => {
    expect(() => createMemoryPair({ maxBufferedFrames: 0 })).toThrow(TransportError);
  });
});
