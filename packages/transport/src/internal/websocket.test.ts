import { once } from "node:events";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Socket } from "node:net";
import { WebSocket } from "ws";
import { afterEach, describe, expect, it } from "vitest";
import { TransportError } from "./errors.ts";
import { bufferedFrames } from "./frame-inbox.ts";
import { noise, noiseResponder } from "./noise-connect.ts";
import { generateNoiseKeyPair } from "./noise-keys.ts";
import type { SecureTransport, Transport } from "./transport.ts";
import {
  createWebSocketAcceptor,
  type WebSocketAcceptor,
  type WebSocketAcceptorOptions,
  type WebSocketConnectionInfo,
} from "./websocket-acceptor.ts";
import { websocketConnector } from "./websocket-client.ts";

const serverKeys = generateNoiseKeyPair();
const clientKeys = generateNoiseKeyPair();
const acceptors: WebSocketAcceptor[] = [];
const isCode = (code: TransportError["code"]) => (e: unknown) => TransportError.is(e, code);
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

afterEach(async () => {
  await Promise.all(acceptors.splice(0).map((a) => a.close()));
});

async function acceptor(
  onConnection: WebSocketAcceptorOptions["onConnection"],
  options: Partial<WebSocketAcceptorOptions> = {},
): Promise<WebSocketAcceptor> {
  const a = await createWebSocketAcceptor({ port: 0, ...options, onConnection });
  acceptors.push(a);
  return a;
}

/** A Noise echo server; records each client's authenticated static key. */
async function echoServer(seen: Uint8Array[] = []): Promise<WebSocketAcceptor> {
  return acceptor(async (raw) => {
    const secure = await noiseResponder(raw, { staticKeyPair: serverKeys });
    seen.push(secure.remoteStaticKey);
    for await (const frame of secure) await secure.send(frame);
  });
}

async function nextFrame(t: Transport): Promise<Uint8Array> {
  const r = await t[Symbol.asyncIterator]().next();
  if (r.done === true) throw new Error("ended");
  return r.value;
}

describe("WebSocket provider on 127.0.0.1", () => {
  it("runs Noise over WebSocket: the client learns and pins the server key, the server learns the client key", async () => {
    const seen: Uint8Array[] = [];
    const server = await echoServer(seen);
    const url = `ws://127.0.0.1:${server.port}/`;
    const learned: Uint8Array[] = [];
    const connect = noise(websocketConnector({ url }), {
      staticKeyPair: clientKeys,
      onServerKey: (key) => void learned.push(key),
    });
    const first = await connect();
    expect(learned).toEqual([serverKeys.publicKey]);
    const big = new Uint8Array(1024 * 1024).map((_, i) => i & 0xff);
    await first.send(big);
    expect(Buffer.from(await nextFrame(first)).equals(big)).toBe(true);
    await first.close();
    const second: SecureTransport = await connect(); // pinned now: no second onServerKey
    expect(learned).toHaveLength(1);
    await second.close();
    expect(seen).toEqual([clientKeys.publicKey, clientKeys.publicKey]);
    expect((await first.closed).reason).toBe("closed");
  });

  it("refuses a server whose key differs from the pin", async () => {
    const server = await echoServer();
    const connect = noise(websocketConnector({ url: `ws://127.0.0.1:${server.port}` }), {
      staticKeyPair: clientKeys,
      serverPublicKey: generateNoiseKeyPair().publicKey,
    });
    await expect(connect()).rejects.toSatisfy(isCode("ServerKeyMismatch"));
  });

  it("fails to connect with ConnectFailed (refused, wrong path, too many connections)", async () => {
    const held: Transport[] = [];
    const server = await acceptor((t) => void held.push(t), { path: "/relay", maxConnections: 1 });
    const base = `ws://127.0.0.1:${server.port}`;
    await expect(websocketConnector({ url: `${base}/other` })()).rejects.toSatisfy(
      isCode("ConnectFailed"),
    );
    const one = await websocketConnector({ url: `${base}/relay` })();
    await expect(websocketConnector({ url: `${base}/relay` })()).rejects.toSatisfy(
      isCode("ConnectFailed"),
    );
    await one.close();
    await server.close();
    await expect(websocketConnector({ url: `${base}/relay` })()).rejects.toSatisfy(
      isCode("ConnectFailed"),
    );
    expect(() => websocketConnector({ url: "http://127.0.0.1:1" })).toThrow(TransportError);
  });

  it("attaches to an existing HTTP server, passes request info, and leaves the server open", async () => {
    const http = createServer((_req, res) => res.end("ok"));
    http.listen(0, "127.0.0.1");
    await once(http, "listening");
    const infos: WebSocketConnectionInfo[] = [];
    const a = await acceptor(
      (t, info) => {
        infos.push(info);
        void t.send(Uint8Array.of(42));
      },
      { server: http, path: "/ws" },
    );
    const port = a.port;
    const client = await websocketConnector({
      url: `ws://127.0.0.1:${port}/ws?v=1`,
      headers: { "x-client": "pairwise-test" },
    })();
    expect(await nextFrame(client)).toEqual(Uint8Array.of(42));
    expect(infos[0]).toMatchObject({ url: "/ws?v=1", remoteAddress: "127.0.0.1" });
    expect(infos[0]!.headers["x-client"]).toBe("pairwise-test");
    await a.close();
    expect((await client.closed).reason).toBe("server shutting down");
    expect(http.listening).toBe(true);
    await new Promise((resolve) => http.close(resolve));
  });

  it("enforces frame limits: send rejects, the receiver closes with FrameTooLarge (1009)", async () => {
    let serverSide: Transport | undefined;
    const server = await acceptor((t) => void (serverSide = t), { maxFrameBytes: 1000 });
    const client = await websocketConnector({
      url: `ws://127.0.0.1:${server.port}`,
      maxFrameBytes: 1000,
    })();
    await expect(client.send(new Uint8Array(1001))).rejects.toSatisfy(isCode("FrameTooLarge"));
    const big = await websocketConnector({ url: `ws://127.0.0.1:${server.port}` })();
    await pause(20);
    const bigServerSide = serverSide!;
    await big.send(new Uint8Array(1001));
    await expect(bigServerSide[Symbol.asyncIterator]().next()).rejects.toSatisfy(
      isCode("FrameTooLarge"),
    );
    expect((await big.closed).error?.code).toBe("FrameTooLarge");
    await client.close();
  });

  it("sends ciphertext-only frames with a zero masking key (ws skips the XOR), others with a random one", async () => {
    // A bare TCP server that answers the upgrade and keeps the client's first frame as sent.
    const firstFrame = async (ciphertextOnly: boolean) => {
      const server = createNetServer();
      const sockets: Socket[] = [];
      const got = new Promise<Buffer>((resolve) => {
        server.once("connection", (socket) => {
          sockets.push(socket);
          let buf = Buffer.alloc(0);
          let upgraded = false;
          socket.on("data", (chunk: Buffer) => {
            buf = Buffer.concat([buf, chunk]);
            if (!upgraded) {
              const end = buf.indexOf("\r\n\r\n");
              if (end < 0) return;
              const key = /Sec-WebSocket-Key: (\S+)/i.exec(buf.toString("latin1"))?.[1] ?? "";
              const accept = createHash("sha1")
                .update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
                .digest("base64");
              socket.write(
                `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
              );
              buf = buf.subarray(end + 4);
              upgraded = true;
            }
            // 2-byte header, 4-byte masking key, 6-byte payload.
            if (buf.length >= 12) resolve(buf.subarray(0, 12));
          });
        });
      });
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      const { port } = server.address() as AddressInfo;
      const t = await websocketConnector({ url: `ws://127.0.0.1:${port}`, ciphertextOnly })();
      await t.send(Buffer.from("secret"));
      const frame = await got;
      for (const socket of sockets) socket.destroy();
      server.close();
      await t.close().catch(() => undefined);
      return frame;
    };
    const zero = await firstFrame(true);
    expect(zero[0]).toBe(0x82); // FIN, binary
    expect(zero[1]).toBe(0x80 | 6); // masked (as RFC 6455 requires of a client), 6 bytes
    expect([...zero.subarray(2, 6)]).toEqual([0, 0, 0, 0]);
    expect(zero.subarray(6).toString()).toBe("secret");
    const random = await firstFrame(false);
    expect(random[1]).toBe(0x80 | 6);
    expect(random.readUInt32BE(2)).not.toBe(0);
    expect(random.subarray(6).toString()).not.toBe("secret");
  });

  it("closes a connection that sends a text message with BadFrame", async () => {
    let serverSide: Transport | undefined;
    const server = await acceptor((t) => void (serverSide = t));
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}`);
    await new Promise((resolve) => ws.once("open", resolve));
    const closeCode = new Promise((resolve) => ws.once("close", resolve));
    ws.send("hello");
    await pause(20);
    await expect(serverSide![Symbol.asyncIterator]().next()).rejects.toSatisfy(isCode("BadFrame"));
    expect(await closeCode).toBe(1003);
  });

  it("backpressure client → server: a slow reader pauses the socket and the writer waits", async () => {
    let serverSide: Transport | undefined;
    const server = await acceptor((t) => void (serverSide = t), { maxBufferedFrames: 8 });
    const client = await websocketConnector({
      url: `ws://127.0.0.1:${server.port}`,
      highWaterMarkBytes: 256 * 1024,
    })();
    const frame = new Uint8Array(64 * 1024);
    const total = 400; // 25 MiB
    let sent = 0;
    const writing = (async () => {
      for (let i = 0; i < total; i++) {
        frame[0] = i & 0xff;
        await client.send(frame);
        sent += 1;
      }
    })();
    await pause(400);
    const reader = serverSide!;
    const buffered = bufferedFrames(reader) ?? Infinity;
    // At most the limit plus the frames decoded from one socket read (≤ 64 KiB, one frame here).
    expect(buffered).toBeLessThanOrEqual(8 + 2);
    expect(sent).toBeLessThan(total);
    const stalledAt = sent;
    await pause(100);
    expect(sent).toBe(stalledAt); // still waiting: nothing moves until the reader pulls
    const frames = reader[Symbol.asyncIterator]();
    for (let i = 0; i < total; i++) {
      const next = await frames.next();
      expect((next.value as Uint8Array)[0]).toBe(i & 0xff);
    }
    await writing;
    await client.close();
  });

  it("backpressure server → client works the same way", async () => {
    const total = 300;
    let done = false;
    let sent = 0;
    const server = await acceptor(
      async (t) => {
        const frame = new Uint8Array(64 * 1024);
        for (let i = 0; i < total; i++) {
          frame[0] = i & 0xff;
          await t.send(frame);
          sent += 1;
        }
        done = true;
      },
      { highWaterMarkBytes: 256 * 1024 },
    );
    const client = await websocketConnector({
      url: `ws://127.0.0.1:${server.port}`,
      maxBufferedFrames: 4,
    })();
    await pause(400);
    expect(done).toBe(false);
    expect(bufferedFrames(client)).toBeLessThanOrEqual(4 + 2);
    let received = 0;
    for await (const frame of client) {
      expect(frame[0]).toBe(received & 0xff);
      received += 1;
      if (received === total) break;
    }
    expect(sent).toBe(total);
  });
});
