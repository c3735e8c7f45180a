import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema, ServerFrameSchema } from "@pairwise/core/relay-proto";
import { createMemoryPair } from "@pairwise/transport/memory";
import { describe, expect, it } from "vitest";
import { ClientError } from "./errors.ts";
import { RelayConnection } from "./relay-connection.ts";

describe("RelayConnection beforeSend (write-ahead)", () => {
  it("runs before every frame leaves, and a throw keeps the frame unsent", async () => {
    const [client, server] = createMemoryPair();
    const order: string[] = [];
    let refuse = false;
    const conn = new RelayConnection(client, {
      timeoutMs: 5_000,
      beforeSend: () => {
        order.push("beforeSend");
        if (refuse) throw new ClientError("StorageFailure", "cannot commit");
      },
    });
    // The server side answers every request with an empty response and logs what arrived.
    const received: string[] = [];
    const serving = (async () => {
      for await (const bytes of server) {
        const frame = fromBinary(ClientFrameSchema, bytes);
        received.push(String(frame.request.case));
        order.push(`sent ${String(frame.request.case)}`);
        if (frame.id !== 0n) {
          await server.send(
            toBinary(
              ServerFrameSchema,
              create(ServerFrameSchema, { kind: { case: "response", value: { id: frame.id } } }),
            ),
          );
        }
      }
    })();

    await conn.notify({ case: "ack", value: { seqs: [1n] } });
    await conn.request({ case: "ack", value: { seqs: [2n] } });
    refuse = true;
    await expect(conn.request({ case: "ack", value: { seqs: [3n] } })).rejects.toMatchObject({
      code: "StorageFailure",
    });
    await expect(conn.notify({ case: "ack", value: { seqs: [4n] } })).rejects.toMatchObject({
      code: "StorageFailure",
    });
    await conn.close();
    await serving;
    expect(received).toEqual(["ack", "ack"]);
    expect(order).toEqual([
      "beforeSend",
      "sent ack",
      "beforeSend",
      "sent ack",
      "beforeSend",
      "beforeSend",
    ]);
  });
});

describe("RelayConnection timeouts", () => {
  it("times out each unanswered request at its own deadline; answered ones are unaffected", async () => {
    const [client, server] = createMemoryPair();
    const conn = new RelayConnection(client, { timeoutMs: 150 });
    // The server answers only requests whose acknowledged seq is even.
    const serving = (async () => {
      for await (const bytes of server) {
        const frame = fromBinary(ClientFrameSchema, bytes);
        const seq = frame.request.case === "ack" ? frame.request.value.seqs[0] : undefined;
        if (seq !== undefined && seq % 2n === 0n) {
          await server.send(
            toBinary(
              ServerFrameSchema,
              create(ServerFrameSchema, { kind: { case: "response", value: { id: frame.id } } }),
            ),
          );
        }
      }
    })();
    const ask = (seq: bigint) => {
      const start = performance.now();
      return conn.request({ case: "ack", value: { seqs: [seq] } }).then(
        () => ({ ok: true, ms: performance.now() - start }),
        (err: unknown) => ({ ok: false, err, ms: performance.now() - start }),
      );
    };
    const first = [ask(1n), ask(2n)];
    await new Promise((r) => setTimeout(r, 60));
    // Sent later, so due later: it must not time out with the first batch.
    const second = [ask(3n), ask(4n)];
    const [a1, a2, b3, b4] = await Promise.all([...first, ...second]);
    expect(a2).toMatchObject({ ok: true });
    expect(b4).toMatchObject({ ok: true });
    for (const r of [a1, b3]) {
      expect(r).toMatchObject({ ok: false, err: { code: "Timeout" } });
      expect(r?.ms).toBeGreaterThanOrEqual(145);
    }
    // The later request was not timed out at the earlier one's deadline.
    expect(b3!.ms).toBeGreaterThanOrEqual(145);
    // The connection still works after timeouts, and a new request gets a new deadline.
    expect(await ask(6n)).toMatchObject({ ok: true });
    expect(await ask(7n)).toMatchObject({ ok: false, err: { code: "Timeout" } });
    await conn.close();
    await serving;
  });

  it("rejects the requests in flight as Disconnected when the connection ends", async () => {
    const [client, server] = createMemoryPair();
    const conn = new RelayConnection(client, { timeoutMs: 60_000 });
    const pending = conn.request({ case: "ack", value: { seqs: [1n] } });
    const outcome = pending.catch((err: unknown) => err);
    await server.close("bye");
    expect(await outcome).toMatchObject({ code: "Disconnected" });
    await conn.close().catch(() => undefined);
  });
});
