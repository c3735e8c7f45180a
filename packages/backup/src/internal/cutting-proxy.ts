import { createServer, connect, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

/**
 * A TCP proxy on a loopback port (for tests): forwards to `target` and, while `cutAfter` is set,
 * destroys every connection once that many request bytes went through it, like a network that
 * drops mid-upload.
 */
export interface CuttingProxy {
  readonly port: number;
  cutAfter: number | undefined;
  /** Stop cutting once this many connections were cut (default: keep cutting). */
  maxCuts: number;
  /** Connections cut so far. */
  readonly cuts: number;
  close(): Promise<void>;
}

/** Starts a {@link CuttingProxy} in front of `127.0.0.1:targetPort`. */
export async function startCuttingProxy(targetPort: number): Promise<CuttingProxy> {
  const sockets = new Set<Socket>();
  let cuts = 0;
  const proxy: { cutAfter: number | undefined; maxCuts: number } = {
    cutAfter: undefined,
    maxCuts: Infinity,
  };
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    let sent = 0;
    client.on("data", (chunk: Buffer) => {
      sent += chunk.length;
      const limit = proxy.cutAfter;
      if (limit !== undefined && sent > limit && cuts < proxy.maxCuts) {
        cuts++;
        client.destroy();
        upstream.destroy();
        return;
      }
      upstream.write(chunk);
    });
    upstream.pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get cutAfter() {
      return proxy.cutAfter;
    },
    set cutAfter(value) {
      proxy.cutAfter = value;
    },
    get maxCuts() {
      return proxy.maxCuts;
    },
    set maxCuts(value) {
      proxy.maxCuts = value;
    },
    get cuts() {
      return cuts;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
