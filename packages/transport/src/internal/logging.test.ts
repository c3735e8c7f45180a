import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { TransportError } from "./errors.ts";
import { logging } from "./logging.ts";
import { createMemoryPair } from "./memory-pair.ts";
import { noise, noiseResponder } from "./noise-connect.ts";
import { generateNoiseKeyPair } from "./noise-keys.ts";
import type { Transport } from "./transport.ts";

function capture(): { lines: Record<string, unknown>[]; raw: string[]; stream: Writable } {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      raw.push(chunk.toString());
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      callback();
    },
  });
  return { lines, raw, stream };
}

describe("logging", () => {
  it("logs open, frame counts and sizes, close — never frame contents or keys", async () => {
    const { lines, raw, stream } = capture();
    const logger = pino({ level: "debug" }, stream);
    const serverKeys = generateNoiseKeyPair();
    const clientKeys = generateNoiseKeyPair();
    let serverSide: Transport | undefined;
    const connect = logging(
      noise(
        () => {
          const [c, s] = createMemoryPair();
          serverSide = s;
          return Promise.resolve(c);
        },
        { staticKeyPair: clientKeys },
      ),
      logger,
    );
    const [client, server] = await Promise.all([
      connect(),
      (async () => {
        while (!serverSide) await new Promise((resolve) => setImmediate(resolve));
        return noiseResponder(serverSide, { staticKeyPair: serverKeys });
      })(),
    ]);
    expect(client.remoteStaticKey).toEqual(serverKeys.publicKey); // the wrapper keeps SecureTransport
    const secret = new TextEncoder().encode("SECRET-PAYLOAD-0123456789");
    await client.send(secret);
    await server.send(secret.subarray(0, 10));
    const frames = client[Symbol.asyncIterator]();
    await frames.next();
    await client.close("done");
    await new Promise((resolve) => setImmediate(resolve));

    const messages = lines.map((l) => l.msg);
    expect(messages).toEqual([
      "transport connecting",
      "transport open",
      "frame",
      "frame",
      "transport closed",
    ]);
    expect(lines.at(-1)).toMatchObject({
      conn: 1,
      reason: "done",
      framesOut: 1,
      bytesOut: secret.byteLength,
      framesIn: 1,
      bytesIn: 10,
    });
    const all = raw.join("");
    const forbidden = [
      "SECRET",
      Buffer.from(secret).toString("hex"),
      Buffer.from(secret).toString("base64"),
      Buffer.from(serverKeys.publicKey).toString("hex"),
      Buffer.from(clientKeys.privateKey).toString("hex"),
      Buffer.from(serverKeys.publicKey).toString("base64"),
    ];
    for (const f of forbidden) expect(all).not.toContain(f);
  });

  it("logs failed connects and failed connections at warn", async () => {
    const { lines, stream } = capture();
    const logger = pino({ level: "info" }, stream);
    const failing = logging(
      () => Promise.reject(new TransportError("ConnectFailed", "refused")),
      logger,
    );
    await expect(failing()).rejects.toThrow(TransportError);
    expect(lines[0]).toMatchObject({ level: 40, msg: "transport connect failed" });
    expect((lines[0]!.err as { name: string }).name).toBe("TransportError");
  });
});
