// A loopback TCP proxy between two federated servers: records every byte that crosses it and
// can cut the link (a partner outage) and restore it.
import { createServer, connect, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

/** A recording, cuttable TCP proxy. */
export interface TapProxy {
  readonly port: number;
  readonly url: string;
  /** Every chunk that crossed, both directions. */
  readonly bytes: Buffer[];
  target(port: number): void;
  /** Drops open connections and refuses new ones until {@link TapProxy.restore}. */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTapProxy(): Promise<TapProxy> {
  let targetPort = 0;
  let down = false;
  const sockets = new Set<Socket>();
  const bytes: Buffer[] = [];
  const server: Server = createServer((inbound) => {
    if (down || targetPort === 0) {
      inbound.destroy();
      return;
    }
    const outbound = connect(targetPort, "127.0.0.1");
    sockets.add(inbound).add(outbound);
    const drop = () => {
      inbound.destroy();
      outbound.destroy();
      sockets.delete(inbound);
      sockets.delete(outbound);
    };
    inbound.on("data", (c: Buffer) => {
      bytes.push(Buffer.from(c));
      outbound.write(c);
    });
    outbound.on("data", (c: Buffer) => {
      bytes.push(Buffer.from(c));
      inbound.write(c);
    });
    inbound.on("error", drop).on("close", drop);
    outbound.on("error", drop).on("close", drop);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const cut = () => {
    down = true;
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    bytes,
    target(p) {
      targetPort = p;
    },
    cut,
    restore() {
      down = false;
    },
    close() {
      cut();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
