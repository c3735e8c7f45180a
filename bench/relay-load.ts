// The relay benchmarks' load: Alice submits 200-byte copies to Bob with a window of outstanding
// submissions, under message ids made as clients make them (time-ordered, newMessageId); Bob
// receives the pushes and acknowledges in batches, recording when each arrived.
// Alice and Bob may be connected to different relay nodes (the cluster benchmark).
import { randomBytes } from "node:crypto";
import { newMessageId } from "@pairwise/core";
import { TestDevice, connect } from "../apps/server/test/support.ts";
import { nowMs } from "./harness.ts";

/** A relay as the load connects to it. */
export type RelayEndpoint = Parameters<typeof TestDevice.register>[0];

/** Alice (on `senderNode`) and Bob (on `receiverNode`), ready to measure. */
export async function relayLoad(
  senderNode: RelayEndpoint,
  receiverNode: RelayEndpoint,
  options: { frameBytes: number; window: number; names?: [string, string] },
) {
  const [aliceName, bobName] = options.names ?? ["alice", "bob"];
  const alice = await TestDevice.register(senderNode, aliceName, { oneTime: 1 });
  const bob = await TestDevice.register(receiverNode, bobName, { oneTime: 1 });
  const bobReg = bob.crypto.registrationId;

  const arrived = new Map<string, number>();
  let pendingAcks: bigint[] = [];
  let onArrive: (() => void) | undefined;
  await bob.conn.close();
  bob.conn = await connect(receiverNode, bob.noiseKeys, (p) => {
    if (p.kind.case !== "envelope") return;
    arrived.set(p.kind.value.messageId, nowMs());
    pendingAcks.push(p.kind.value.seq);
    if (pendingAcks.length >= 100) flushAcks();
    onArrive?.();
  });
  const flushAcks = () => {
    const seqs = pendingAcks;
    pendingAcks = [];
    if (seqs.length) void bob.conn.notify({ case: "ack", value: { seqs } });
  };
  const ackTimer = setInterval(flushAcks, 20);
  await bob.conn.request({ case: "startDelivery", value: {} });

  const body = randomBytes(options.frameBytes);
  const submit = (id: string) =>
    alice.conn.request({
      case: "submitMessage",
      value: {
        messageId: id,
        copies: [{ accountId: bobName, deviceId: 1, registrationId: bobReg, type: 2, body }],
      },
    });
  const waitArrived = (n: number) =>
    new Promise<void>((resolve) => {
      if (arrived.size >= n) {
        resolve();
        return;
      }
      onArrive = () => arrived.size >= n && resolve();
    });

  return {
    alice,
    bob,
    arrived,
    submit,
    waitArrived,
    /** Messages per second submitted, delivered and acknowledged with a window outstanding. */
    async peak(count: number): Promise<number> {
      arrived.clear();
      const start = nowMs();
      let next = 0;
      await Promise.all(
        Array.from({ length: options.window }, async () => {
          while (next++ < count) await submit(newMessageId());
        }),
      );
      await waitArrived(count);
      return count / ((nowMs() - start) / 1000);
    },
    async close() {
      clearInterval(ackTimer);
      for (const d of [alice, bob]) await d.conn.close().catch(() => undefined);
    },
  };
}
