// The relay benchmarks' load: Alice submits 200-byte copies to Bob with a window of outstanding
// submissions, under message ids made as clients make them (time-ordered, newMessageId); Bob
// receives the pushes, counts them and acknowledges in batches (arrival times only of the
// messages `record` names).
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

  // Kept light, as the floor's side is: a count, and arrival times only while `record` asks for
  // them, in a typed array. A Map of every message's id and arrival time, kept through each peak
  // run, was measurement overhead: the load's CPU per message at peak went from 18.8 to 14.7 µs
  // (medians of 5 and 7 bench runs) without it.
  let arrived = 0;
  let recording: { index: Map<string, number>; at: Float64Array } | undefined;
  let pendingAcks: bigint[] = [];
  let onArrive: (() => void) | undefined;
  await bob.conn.close();
  bob.conn = await connect(receiverNode, bob.noiseKeys, (p) => {
    if (p.kind.case !== "envelope") return;
    arrived++;
    if (recording) {
      const i = recording.index.get(p.kind.value.messageId);
      if (i !== undefined) recording.at[i] = nowMs();
    }
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
  /** Resolves once `n` messages have arrived since the count was last reset. */
  const waitArrived = (n: number) =>
    new Promise<void>((resolve) => {
      if (arrived >= n) {
        resolve();
        return;
      }
      onArrive = () => {
        if (arrived >= n) resolve();
      };
    });

  return {
    alice,
    bob,
    submit,
    waitArrived,
    /**
     * Resets the arrival count and records when each of `count` messages arrives: `expect(id, i)`
     * (before submitting `id`) names message `i`, and `at[i]` becomes its arrival time (`nowMs`),
     * NaN until it has arrived.
     */
    record(count: number) {
      arrived = 0;
      const index = new Map<string, number>();
      const at = new Float64Array(count).fill(NaN);
      recording = { index, at };
      return { at, expect: (id: string, i: number) => void index.set(id, i) };
    },
    /** Messages per second submitted, delivered and acknowledged with a window outstanding. */
    async peak(count: number): Promise<number> {
      arrived = 0;
      recording = undefined;
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
