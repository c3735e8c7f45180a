import { once } from "node:events";
import { createServer, connect, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { TransportError } from "./errors.ts";
import { bufferedFrames } from "./frame-inbox.ts";
import { lengthPrefixed } from "./length-prefixed.ts";
import { noiseInitiator, noiseResponder } from "./noise-connect.ts";
import { generateNoiseKeyPair } from "./noise-keys.ts";

let server: Server | undefined;
const sockets: Socket[] = [];

async function socketPair(): Promise<[Socket, Socket]> {
  server = createServer();
  const accepted = once(server, "connection") as Promise<[Socket]>;
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  const client = connect(address.port, "127.0.0.1");
  await once(client, "connect");
  const [serverSide] = await accepted;
  sockets.push(client, serverSide);
  return [client, serverSide];
}

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  if (server) await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

describe("lengthPrefixed over a TCP socket on 127.0.0.1", () => {
  it("runs the Noise handshake and carries frames (empty and 1 MiB)", async () => {
    const [c, s] = await socketPair();
    const serverKeys = generateNoiseKeyPair();
    const clientKeys = generateNoiseKeyPair();
    const [client, srv] = await Promise.all([
      noiseInitiator(lengthPrefixed(c), {
        staticKeyPair: clientKeys,
        serverPublicKey: serverKeys.publicKey,
      }),
      noiseResponder(lengthPrefixed(s), { staticKeyPair: serverKeys }),
    ]);
    expect(srv.remoteStaticKey).toEqual(clientKeys.publicKey);
    const big = new Uint8Array(1024 * 1024).fill(7);
    await client.send(new Uint8Array(0));
    await client.send(big);
    const frames = srv[Symbol.asyncIterator]();
    expect((await frames.next()).value).toHaveLength(0);
    const got = await frames.next();
    expect(Buffer.from(got.value as Uint8Array).equals(big)).toBe(true);
    await client.close();
    expect(await frames.next()).toEqual({ done: true, value: undefined });
    expect((await srv.closed).reason).toBe("peer closed");
  });

  it("refuses an over-limit length from the header alone", async () => {
    const [c, s] = await socketPair();
    const t = lengthPrefixed(s, { maxFrameBytes: 1024 });
    c.write(Buffer.from([0xff, 0xff, 0xff, 0xff])); // announces 4 GiB, sends nothing more
    await expect(t[Symbol.asyncIterator]().next()).rejects.toSatisfy((e) =>
      TransportError.is(e, "FrameTooLarge"),
    );
    expect((await t.closed).error?.code).toBe("FrameTooLarge");
  });

  it("fails with BadFrame when the stream ends inside a frame; splits headers fine", async () => {
    const [c, s] = await socketPair();
    const t = lengthPrefixed(s);
    const frames = t[Symbol.asyncIterator]();
    c.write(Buffer.from([0, 0]));
    await new Promise((resolve) => setTimeout(resolve, 10));
    c.write(Buffer.from([0, 2, 0xaa, 0xbb, 0, 0, 0, 9, 1]));
    c.end();
    expect((await frames.next()).value).toEqual(Uint8Array.of(0xaa, 0xbb));
    await expect(frames.next()).rejects.toSatisfy((e) => TransportError.is(e, "BadFrame"));
  });

  it("bounds what a slow reader buffers and makes the writer wait", async () => {
    const [c, s] = await socketPair();
    const writer = lengthPrefixed(c);
    const reader = lengthPrefixed(s, { maxBufferedFrames: 8 });
    const frame = new Uint8Array(64 * 1024);
    const total = 400; // 25 MiB: more than loopback socket buffers absorb
    let sent = 0;
    const writing = (async () => {
      for (let i = 0; i < total; i++) {
        frame[0] = i & 0xff;
        await writer.send(frame);
        sent += 1;
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const stalledAt = sent;
    expect(bufferedFrames(reader)).toBe(8); // parsing stopped at the limit; the socket is paused
    expect(s.isPaused()).toBe(true);
    expect(stalledAt).toBeLessThan(total); // the writer is waiting on the reader
    const frames = reader[Symbol.asyncIterator]();
    for (let i = 0; i < total; i++) {
      const next = await frames.next();
      expect((next.value as Uint8Array)[0]).toBe(i & 0xff);
    }
    await writing;
    await writer.close();
  });
});
