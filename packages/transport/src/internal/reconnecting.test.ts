import { setTimeout as delay } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { TransportError } from "./errors.ts";
import { createMemoryPair } from "./memory-pair.ts";
import { noise, noiseResponder } from "./noise-connect.ts";
import { generateNoiseKeyPair } from "./noise-keys.ts";
import type { ReconnectState } from "./reconnecting-options.ts";
import { reconnecting } from "./reconnecting.ts";
import type { Connector, Transport } from "./transport.ts";
import { createWebSocketAcceptor, type WebSocketAcceptor } from "./websocket-acceptor.ts";
import { websocketConnector } from "./websocket-client.ts";

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (condition()) return;
    await delay(5);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** An in-memory "server": each connect makes a pair; `failNext` makes connects fail. */
function memoryServer() {
  const sides: Transport[] = [];
  const state: { failNext: number; error: TransportError } = {
    failNext: 0,
    error: new TransportError("ConnectFailed", "down"),
  };
  const connector: Connector = () => {
    if (state.failNext > 0) {
      state.failNext -= 1;
      return Promise.reject(state.error);
    }
    const [client, server] = createMemoryPair();
    sides.push(server);
    return Promise.resolve(client);
  };
  return { sides, state, connector };
}

const fastSleep = (delays: number[]) => async (ms: number) => {
  delays.push(ms);
  await delay(1);
};

const bytes = (...v: number[]) => Uint8Array.from(v);

describe("reconnecting", () => {
  it("reconnects with exponential backoff, reruns onConnected, and resets after a stable connection", async () => {
    const server = memoryServer();
    const delays: number[] = [];
    const states: ReconnectState[] = [];
    let clock = 0;
    let connectedCount = 0;
    const r = reconnecting(server.connector, {
      random: () => 0.999,
      jitter: "none",
      sleep: fastSleep(delays),
      now: () => clock,
      onState: (s) => states.push(s),
      onConnected: async (t) => {
        connectedCount += 1;
        await t.send(bytes(0xa0 + connectedCount)); // e.g. re-authenticate
      },
    });
    const frames = r[Symbol.asyncIterator]();
    await waitFor(() => r.state === "connected", "first connection");
    expect(connectedCount).toBe(1);
    await r.send(bytes(1));
    const first = server.sides[0]![Symbol.asyncIterator]();
    expect((await first.next()).value).toEqual(bytes(0xa1));
    expect((await first.next()).value).toEqual(bytes(1));
    await server.sides[0]!.send(bytes(2));
    expect((await frames.next()).value).toEqual(bytes(2));

    // The server goes away; three connects fail; then it is back.
    server.state.failNext = 3;
    await server.sides[0]!.close("server killed");
    const pending = r.send(bytes(3)); // waits for the next connection
    await waitFor(() => connectedCount === 2, "reconnection");
    await pending;
    expect(delays).toEqual([250, 500, 1000, 2000]);
    const second = server.sides[1]![Symbol.asyncIterator]();
    expect((await second.next()).value).toEqual(bytes(0xa2));
    expect((await second.next()).value).toEqual(bytes(3));
    await server.sides[1]!.send(bytes(4));
    expect((await frames.next()).value).toEqual(bytes(4));

    // This connection stays up past stableAfterMs: the backoff starts over.
    clock += 10_000;
    await server.sides[1]!.close("server killed");
    await waitFor(() => connectedCount === 3, "third connection");
    expect(delays).toEqual([250, 500, 1000, 2000, 250]);
    expect(states).toContain("disconnected");

    await r.close();
    expect(r.state).toBe("closed");
    expect(await frames.next()).toEqual({ done: true, value: undefined });
    await expect(r.send(bytes(5))).rejects.toSatisfy((e) => TransportError.is(e, "Closed"));
    expect((await server.sides[2]!.closed).reason).toBe("closed");
  });

  it("uses full jitter by default: a uniform delay below the cap", async () => {
    const server = memoryServer();
    server.state.failNext = 2;
    const delays: number[] = [];
    const r = reconnecting(server.connector, { random: () => 0.5, sleep: fastSleep(delays) });
    await waitFor(() => r.state === "connected", "connection");
    expect(delays).toEqual([125, 250]);
    await r.close();
  });

  it("gives up after maxAttempts and rejects sends with the error", async () => {
    const server = memoryServer();
    server.state.failNext = 100;
    const r = reconnecting(server.connector, { maxAttempts: 3, sleep: fastSleep([]) });
    const closed = await r.closed;
    expect(closed.error?.code).toBe("ConnectFailed");
    expect(r.state).toBe("closed");
    expect(server.state.failNext).toBe(97);
    await expect(r.send(bytes(1))).rejects.toSatisfy((e) => TransportError.is(e, "ConnectFailed"));
  });

  it("does not retry a server key mismatch", async () => {
    const server = memoryServer();
    server.state.failNext = 100;
    server.state.error = new TransportError("ServerKeyMismatch", "pin");
    const r = reconnecting(server.connector, { sleep: fastSleep([]) });
    expect((await r.closed).error?.code).toBe("ServerKeyMismatch");
    expect(server.state.failNext).toBe(99);
  });

  it("closes promptly while waiting out a long backoff (no timer left behind)", async () => {
    const timers = () => process.getActiveResourcesInfo().filter((x) => x === "Timeout").length;
    const before = timers();
    const server = memoryServer();
    server.state.failNext = 1;
    const r = reconnecting(server.connector, { minDelayMs: 60_000, maxDelayMs: 60_000 });
    await waitFor(() => r.state === "disconnected", "backoff");
    // close() must not wait out the 60 s backoff: the test's own timeout would catch that.
    await r.close();
    expect(timers()).toBeLessThanOrEqual(before);
  });

  it("closes promptly during a slow connect and closes the transport that arrives late", async () => {
    const [client] = createMemoryPair();
    let arrive: (t: Transport) => void = () => undefined;
    const r = reconnecting(() => new Promise<Transport>((resolve) => (arrive = resolve)));
    await waitFor(() => r.state === "connecting", "connecting");
    await r.close();
    arrive(client);
    expect((await client.closed).reason).toBe("closed");
  });

  it("closes promptly while onConnected hangs", async () => {
    const server = memoryServer();
    const r = reconnecting(server.connector, { onConnected: () => new Promise(() => undefined) });
    await waitFor(() => server.sides.length === 1, "connect");
    await r.close();
    expect((await server.sides[0]!.closed).reason).toBe("closed");
  });

  it("lets onConnected exchange frames before the consumer sees any", async () => {
    const server = memoryServer();
    const r = reconnecting(server.connector, {
      onConnected: async (t) => {
        await t.send(bytes(0x01)); // "hello"
        for await (const reply of t) {
          expect(reply).toEqual(bytes(0x02)); // "welcome"
          break; // leaving this loop must not close the connection
        }
      },
    });
    await waitFor(() => server.sides.length === 1, "connect");
    const s = server.sides[0]!;
    const fromClient = s[Symbol.asyncIterator]();
    expect((await fromClient.next()).value).toEqual(bytes(0x01));
    await s.send(bytes(0x02));
    await s.send(bytes(0x03));
    const frames = r[Symbol.asyncIterator]();
    expect((await frames.next()).value).toEqual(bytes(0x03));
    expect(r.state).toBe("connected");
    await r.close();
  });
});

describe("reconnecting over Noise over WebSocket", () => {
  it("survives a server restart on the same port and re-runs onConnected", async () => {
    const serverKeys = generateNoiseKeyPair();
    const clientKeys = generateNoiseKeyPair();
    const start = (port: number): Promise<WebSocketAcceptor> =>
      createWebSocketAcceptor({
        port,
        onConnection: async (raw) => {
          const secure = await noiseResponder(raw, { staticKeyPair: serverKeys });
          for await (const frame of secure) await secure.send(frame);
        },
      });
    let server = await start(0);
    const port = server.port;
    const delays: number[] = [];
    let connected = 0;
    const r = reconnecting(
      noise(websocketConnector({ url: `ws://127.0.0.1:${port}/` }), {
        staticKeyPair: clientKeys,
      }),
      {
        sleep: async (ms, signal) => {
          delays.push(ms);
          await delay(5, undefined, { signal }).catch(() => undefined);
        },
        onConnected: () => {
          connected += 1;
        },
      },
    );
    const frames = r[Symbol.asyncIterator]();
    await r.send(bytes(1));
    expect((await frames.next()).value).toEqual(bytes(1));
    expect(r.current?.remoteStaticKey).toEqual(serverKeys.publicKey);

    await server.close(); // kill the server
    await waitFor(() => r.state !== "connected", "disconnect");
    await waitFor(() => delays.length >= 3, "failed attempts");
    server = await start(port); // restart on the same port
    try {
      await waitFor(() => connected === 2, "reconnect");
      await r.send(bytes(2));
      expect((await frames.next()).value).toEqual(bytes(2));
      expect(delays.slice(0, 3).every((d, i) => d < 250 * 2 ** (i + 1))).toBe(true);
    } finally {
      await r.close();
      await server.close();
    }
  });
});
