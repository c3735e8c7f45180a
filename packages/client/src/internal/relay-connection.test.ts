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
