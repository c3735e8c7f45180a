// The relay benchmarks' load: Alice submits 200-byte copies to Bob with a window of outstanding
// submissions, under message ids made as clients make them (time-ordered, newMessageId); Bob
// receives the pushes, counts them and acknowledges in batches (arrival times only of the
// messages `record` names).
// Alice and Bob may be connected to different relay nodes (the cluster benchmark).
import { randomBytes } from "node:crypto";
import { newMessageId } from "@pairwise/core";
import { TestDevice, connect } from "../apps/server/test/support.ts";
import { nowMs } from "./harness.ts";

/** Where a recorded message's id holds the recording's tag (4 hex digits), then its index (8). */
const RECORD_TAG_AT = 24;
const RECORD_INDEX_AT = 28;

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
  let recording: { tag: string; at: Float64Array } | undefined;
  let pendingAcks: bigint[] = [];
  let onArrive: (() => void) | undefined;
  await bob.conn.close();
  bob.conn = await connect(receiverNode, bob.noiseKeys, (p) => {
    if (p.kind.case !== "envelope") return;
    arrived++;
    if (recording) {
      const id = p.kind.value.messageId;
      if (id.startsWith(recording.tag, RECORD_TAG_AT)) {
        const i = Number.parseInt(id.slice(RECORD_INDEX_AT), 16);
        if (i < recording.at.length) recording.at[i] = nowMs();
      }
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
     * Resets the arrival count and records when each of `count` messages arrives: `id(i)` makes
     * the id to submit message `i` under, and `at[i]` becomes its arrival time (`nowMs`), NaN
     * until it has arrived. The id is a new one (newMessageId) whose last 12 hex digits are this
     * recording's random tag and `i`: still a UUIDv7, made as it is sent, and found again on
     * arrival without a table of the ids sent. Kept in a Map (id to index), the ids and the
     * Map's outgrown tables filled this process's heap: in 7 of 30 bench runs it ran full
     * collections while recording (1 to 4), and 6 of those 7 missed the p99 target; in 8 runs
     * without the Map, none. Its scavenges of 3 ms or more while recording went from 8-11 a run
     * (7 runs) to 1-5 (7 of 8 runs; the eighth, with everything slowed, had 11).
     */
    record(count: number) {
      arrived = 0;
      const tag = randomBytes(2).toString("hex");
      const at = new Float64Array(count).fill(NaN);
      recording = { tag, at };
      return {
        at,
        id: (i: number) =>
          newMessageId().slice(0, RECORD_TAG_AT) + tag + i.toString(16).padStart(8, "0"),
      };
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
