import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createRelay, type FrameRewrite } from "../../test/helpers/relay.ts";
import { TransportError } from "./errors.ts";
import { createMemoryPair } from "./memory-pair.ts";
import { noise, noiseInitiator, noiseResponder } from "./noise-connect.ts";
import { generateNoiseKeyPair } from "./noise-keys.ts";
import { CipherState } from "./noise-cipher.ts";
import { NOISE_CHUNK_BYTES, createSecureTransport } from "./secure-transport.ts";
import type { SecureTransport, Transport } from "./transport.ts";

const serverKeys = generateNoiseKeyPair();
const clientKeys = generateNoiseKeyPair();

async function handshake(
  client: Transport,
  server: Transport,
  clientOptions: Partial<Parameters<typeof noiseInitiator>[1]> = {},
): Promise<[SecureTransport, SecureTransport]> {
  return Promise.all([
    noiseInitiator(client, { staticKeyPair: clientKeys, ...clientOptions }),
    noiseResponder(server, { staticKeyPair: serverKeys }),
  ]);
}

async function nextFrame(t: AsyncIterator<Uint8Array>): Promise<Uint8Array> {
  const r = await t.next();
  if (r.done === true) throw new Error("ended");
  return r.value;
}

const isCode = (code: TransportError["code"]) => (e: unknown) => TransportError.is(e, code);

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("Noise handshake over a memory pair", () => {
  it("authenticates both static keys and carries frames both ways", async () => {
    const [c, s] = createMemoryPair();
    const learned: Uint8Array[] = [];
    const [client, server] = await handshake(c, s, { onServerKey: (k) => void learned.push(k) });
    expect(learned).toEqual([serverKeys.publicKey]);
    expect(client.remoteStaticKey).toEqual(serverKeys.publicKey);
    expect(server.remoteStaticKey).toEqual(clientKeys.publicKey);
    expect(client.handshakeHash).toEqual(server.handshakeHash);
    await client.send(Uint8Array.of(1, 2));
    await server.send(new Uint8Array(0));
    expect(await nextFrame(server[Symbol.asyncIterator]())).toEqual(Uint8Array.of(1, 2));
    expect(await nextFrame(client[Symbol.asyncIterator]())).toEqual(new Uint8Array(0));
    await client.close();
    expect((await server.closed).reason).toBe("closed");
  });

  it("accepts the pinned server key and refuses another one before sending its own", async () => {
    const [c1, s1] = createMemoryPair();
    await handshake(c1, s1, { serverPublicKey: serverKeys.publicKey });
    const [c2, s2] = createMemoryPair();
    const responder = noiseResponder(s2, { staticKeyPair: serverKeys });
    await expect(
      noiseInitiator(c2, {
        staticKeyPair: clientKeys,
        serverPublicKey: generateNoiseKeyPair().publicKey,
      }),
    ).rejects.toSatisfy(isCode("ServerKeyMismatch"));
    await expect(responder).rejects.toSatisfy(isCode("HandshakeFailed"));
    expect((await c2.closed).reason).toBe("ServerKeyMismatch");
  });

  it("noise() pins the first server key for later connections", async () => {
    const pairs: Transport[] = [];
    let server = serverKeys;
    const connect = noise(
      () => {
        const [c, s] = createMemoryPair();
        pairs.push(s);
        void noiseResponder(s, { staticKeyPair: server }).catch(() => undefined);
        return Promise.resolve(c);
      },
      { staticKeyPair: clientKeys },
    );
    await connect();
    await connect();
    server = generateNoiseKeyPair(); // the "server" changes its key: now refused
    await expect(connect()).rejects.toSatisfy(isCode("ServerKeyMismatch"));
  });

  it("times out a handshake the peer never answers", async () => {
    const [c] = createMemoryPair();
    await expect(
      noiseInitiator(c, { staticKeyPair: clientKeys, handshakeTimeoutMs: 50 }),
    ).rejects.toSatisfy(isCode("Timeout"));
    expect((await c.closed).reason).toBe("Timeout");
  });

  it("splits a 1 MiB frame into Noise messages and reassembles it", async () => {
    let rawFrames = 0;
    const relay = createRelay({
      toServer: (frame, i) => {
        if (i >= 2) {
          rawFrames += 1;
          expect(frame.byteLength).toBeLessThanOrEqual(65535);
        }
        return [frame];
      },
    });
    const [client, server] = await handshake(relay.client, relay.server);
    const big = new Uint8Array(1024 * 1024).map((_, i) => i % 251);
    await client.send(big);
    const got = await nextFrame(server[Symbol.asyncIterator]());
    expect(Buffer.from(got).equals(big)).toBe(true);
    expect(rawFrames).toBe(Math.ceil(big.byteLength / NOISE_CHUNK_BYTES));
  });

  it("enforces the frame limit on send (reject) and on receive (close)", async () => {
    const [c, s] = createMemoryPair();
    const [client, server] = await Promise.all([
      noiseInitiator(c, { staticKeyPair: clientKeys, maxFrameBytes: 200_000 }),
      noiseResponder(s, { staticKeyPair: serverKeys, maxFrameBytes: 100_000 }),
    ]);
    await expect(client.send(new Uint8Array(200_001))).rejects.toSatisfy(isCode("FrameTooLarge"));
    await client.send(new Uint8Array(150_000));
    await expect(server[Symbol.asyncIterator]().next()).rejects.toSatisfy(isCode("FrameTooLarge"));
    expect((await client.closed).reason).toBe("FrameTooLarge");
  });
});

describe("small frames sent in one turn share a Noise message", () => {
  it("batches a burst into one raw frame, in order, around a large frame", async () => {
    const raw: number[] = [];
    const relay = createRelay({
      toServer: (frame, i) => {
        if (i >= 2) raw.push(frame.byteLength);
        return [frame];
      },
    });
    const [client, server] = await handshake(relay.client, relay.server);
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 100; i++) sent.push(Uint8Array.of(i, i, i));
    sent.push(new Uint8Array(0));
    const big = new Uint8Array(NOISE_CHUNK_BYTES + 5).fill(7);
    sent.push(big, Uint8Array.of(200));
    await Promise.all(sent.map((f) => client.send(f)));
    const frames = server[Symbol.asyncIterator]();
    for (const f of sent) expect(await nextFrame(frames)).toEqual(f);
    // 101 small frames in one message, the large one in two, the last small frame alone.
    expect(raw.length).toBe(4);
    expect(raw[0]).toBe(1 + 16 + 100 * (4 + 3) + 4);
  });

  it("fills a batch up to one Noise message, then starts the next", async () => {
    const raw: number[] = [];
    const relay = createRelay({
      toServer: (frame, i) => {
        if (i >= 2) raw.push(frame.byteLength);
        return [frame];
      },
    });
    const [client, server] = await handshake(relay.client, relay.server);
    const piece = new Uint8Array(1000).fill(3);
    const count = 200; // 200 × 1004 bytes: four messages
    for (let i = 0; i < count; i++) void client.send(piece);
    const frames = server[Symbol.asyncIterator]();
    for (let i = 0; i < count; i++) expect(await nextFrame(frames)).toEqual(piece);
    expect(raw.every((n) => n <= 65535)).toBe(true);
    expect(raw.length).toBe(Math.ceil((count * 1004) / NOISE_CHUNK_BYTES));
  });

  it("hands a batch's frames over in order to reads called all at once, before and after it arrives", async () => {
    const [c, s] = createMemoryPair();
    const [client, server] = await handshake(c, s);
    const frames = server[Symbol.asyncIterator]();
    // Two reads wait before anything arrives; then a burst of five lands as one batch, and more
    // reads are called at once while the first ones are still settling.
    const early = [frames.next(), frames.next()];
    for (let i = 0; i < 5; i++) void client.send(Uint8Array.of(i));
    await nextTurn();
    const late = [frames.next(), frames.next(), frames.next()];
    const got = await Promise.all([...early, ...late]);
    expect(got.map((r) => (r.done ? -1 : r.value[0]))).toEqual([0, 1, 2, 3, 4]);
    // A read called once the batch is used up waits for the next message.
    const after = frames.next();
    void client.send(Uint8Array.of(9));
    expect(await nextFrame({ next: () => after })).toEqual(Uint8Array.of(9));
  });

  it("sends what was queued before close()", async () => {
    const [c, s] = createMemoryPair();
    const [client, server] = await handshake(c, s);
    void client.send(Uint8Array.of(1));
    void client.send(Uint8Array.of(2));
    await client.close();
    const frames = server[Symbol.asyncIterator]();
    expect(await nextFrame(frames)).toEqual(Uint8Array.of(1));
    expect(await nextFrame(frames)).toEqual(Uint8Array.of(2));
    expect((await frames.next()).done).toBe(true);
  });

  describe("a malformed batch (authentic, so only the layout is wrong) closes with BadFrame", () => {
    const key = new Uint8Array(32).fill(9);
    const receiver = () => {
      const [peer, mine] = createMemoryPair();
      const t = createSecureTransport({
        raw: mine,
        rawFrames: mine[Symbol.asyncIterator](),
        handshake: {
          send: new CipherState(new Uint8Array(32)),
          receive: new CipherState(key),
          remoteStaticKey: new Uint8Array(32),
          handshakeHash: new Uint8Array(32),
        },
        maxFrameBytes: 1000,
      });
      const sender = new CipherState(key);
      return {
        t,
        send: (plaintext: number[]) => peer.send(sender.encrypt(Uint8Array.from(plaintext))),
      };
    };
    const cases: [string, number[], TransportError["code"]][] = [
      ["one frame only", [2, 0, 0, 0, 1, 7], "BadFrame"],
      ["no frame", [2], "BadFrame"],
      ["a length running past the end", [2, 0, 0, 0, 1, 7, 0, 0, 0, 9, 1], "BadFrame"],
      ["a truncated length", [2, 0, 0, 0, 1, 7, 0, 0], "BadFrame"],
      [
        "a frame over the limit",
        [2, 0, 0, 0, 0, 0, 0, 3, 233, ...new Array<number>(1001).fill(0)],
        "FrameTooLarge",
      ],
      ["an unknown flag", [3, 0, 0, 0, 0], "BadFrame"],
    ];
    for (const [name, plaintext, code] of cases) {
      it(name, async () => {
        const { t, send } = receiver();
        await send(plaintext);
        await expect(t[Symbol.asyncIterator]().next()).rejects.toSatisfy(isCode(code));
        expect((await t.closed).error?.code).toBe(code);
      });
    }

    it("a batch inside a multi-message frame", async () => {
      const { t, send } = receiver();
      await send([1, 5]);
      await send([2, 0, 0, 0, 1, 7, 0, 0, 0, 1, 8]);
      await expect(t[Symbol.asyncIterator]().next()).rejects.toSatisfy(isCode("BadFrame"));
    });

    it("a well-formed batch is read frame by frame", async () => {
      const { t, send } = receiver();
      await send([2, 0, 0, 0, 1, 7, 0, 0, 0, 0, 0, 0, 0, 2, 8, 9]);
      const frames = t[Symbol.asyncIterator]();
      expect(await nextFrame(frames)).toEqual(Uint8Array.of(7));
      expect(await nextFrame(frames)).toEqual(new Uint8Array(0));
      expect(await nextFrame(frames)).toEqual(Uint8Array.of(8, 9));
    });
  });
});

describe("Noise transport messages refuse tampering with BadFrame", () => {
  // toServer frames 0 and 1 are handshake messages 1 and 3; app frames start at index 2.
  const cases: [string, FrameRewrite][] = [
    ["tampered", (f, i) => (i === 2 ? [f.map((b, j) => (j === 5 ? b ^ 0x40 : b))] : [f])],
    ["truncated", (f, i) => (i === 2 ? [f.subarray(0, f.byteLength - 1)] : [f])],
    ["too short for a tag", (f, i) => (i === 2 ? [f.subarray(0, 10)] : [f])],
    ["replayed", (f, i) => (i === 2 ? [f, f] : [f])],
    ["dropped", (f, i) => (i === 2 ? [] : [f])],
  ];
  for (const [name, rewrite] of cases) {
    it(name, async () => {
      const relay = createRelay({ toServer: rewrite });
      const [client, server] = await handshake(relay.client, relay.server);
      await client.send(Uint8Array.of(1));
      await nextTurn(); // frames sent in one turn would share a Noise message
      await client.send(Uint8Array.of(2));
      const frames = server[Symbol.asyncIterator]();
      const outcome = name === "replayed" ? [await nextFrame(frames)] : [];
      await expect(frames.next()).rejects.toSatisfy(isCode("BadFrame"));
      expect(outcome.every((f) => f[0] === 1)).toBe(true);
      const closed = await server.closed;
      expect(closed.error?.code).toBe("BadFrame");
      expect((await client.closed).reason).toBe("relay closed");
    });
  }

  it("reordered", async () => {
    let held: Uint8Array | undefined;
    const relay = createRelay({
      toServer: (f, i) => {
        if (i === 2) {
          held = f;
          return [];
        }
        return i === 3 && held ? [f, held] : [f];
      },
    });
    const [client, server] = await handshake(relay.client, relay.server);
    await client.send(Uint8Array.of(1));
    await nextTurn();
    await client.send(Uint8Array.of(2));
    await expect(server[Symbol.asyncIterator]().next()).rejects.toSatisfy(isCode("BadFrame"));
  });

  it("a connection that ends inside a multi-message frame", async () => {
    const relay = createRelay({ toServer: (f, i) => (i === 3 ? [] : [f]) });
    const [client, server] = await handshake(relay.client, relay.server);
    await client.send(new Uint8Array(NOISE_CHUNK_BYTES + 10)); // two Noise messages
    await client.close();
    await expect(server[Symbol.asyncIterator]().next()).rejects.toSatisfy(isCode("BadFrame"));
  });
});

describe("random bytes in the handshake", () => {
  const opts = { numRuns: 60 };

  it("the initiator fails with HandshakeFailed on a random second message", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 160 }), async (garbage) => {
        const [c, s] = createMemoryPair();
        const initiator = noiseInitiator(c, { staticKeyPair: clientKeys });
        await s[Symbol.asyncIterator]().next();
        await s.send(garbage);
        await expect(initiator).rejects.toSatisfy(isCode("HandshakeFailed"));
        expect((await s.closed).reason).toBe("HandshakeFailed");
      }),
      opts,
    );
  });

  it("the responder fails with HandshakeFailed on random first and third messages", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 120 }),
        fc.uint8Array({ maxLength: 120 }),
        async (first, third) => {
          const [c, s] = createMemoryPair();
          const responder = noiseResponder(s, { staticKeyPair: serverKeys });
          const fromServer = c[Symbol.asyncIterator]();
          await c.send(first);
          const second = await fromServer.next();
          if (second.done !== true) await c.send(third);
          await expect(responder).rejects.toSatisfy(isCode("HandshakeFailed"));
        },
      ),
      opts,
    );
  });
});
