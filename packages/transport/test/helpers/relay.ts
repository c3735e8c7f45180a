import { createMemoryPair } from "../../src/internal/memory-pair.ts";
import type { Transport } from "../../src/internal/transport.ts";

/** Rewrites the `index`-th frame of one direction into zero or more frames. */
export type FrameRewrite = (frame: Uint8Array, index: number) => Uint8Array[];

/** A man in the middle between two memory transports, for tampering tests. */
export interface Relay {
  readonly client: Transport;
  readonly server: Transport;
}

async function pump(from: Transport, to: Transport, rewrite: FrameRewrite): Promise<void> {
  let index = 0;
  try {
    for await (const frame of from) {
      for (const out of rewrite(frame, index)) await to.send(out);
      index += 1;
    }
  } catch {
    // the relay only forwards; failures show up at the endpoints
  }
  await to.close("relay closed");
}

/** Creates a relay whose frames pass through `toServer` / `toClient` rewrites. */
export function createRelay(rewrites: { toServer?: FrameRewrite; toClient?: FrameRewrite }): Relay {
  const [client, relayClientSide] = createMemoryPair();
  const [relayServerSide, server] = createMemoryPair();
  const same: FrameRewrite = (frame) => [frame];
  void pump(relayClientSide, relayServerSide, rewrites.toServer ?? same);
  void pump(relayServerSide, relayClientSide, rewrites.toClient ?? same);
  return { client, server };
}
