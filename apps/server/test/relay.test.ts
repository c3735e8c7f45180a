import { createHash } from "node:crypto";
import { join } from "node:path";
import { ClientError, expectResult } from "@pairwise/client";
import { fromBinary } from "@bufbuild/protobuf";
import { decodeContent, decryptContent, newMessageId } from "@pairwise/core";
import { ClientFrameSchema, GroupNoticeSchema } from "@pairwise/core/relay-proto";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import { createTextSender } from "./fixtures/text-sender.ts";
import { submissionKeys } from "../src/internal/dedup-key.ts";
import { loadServerKey } from "../src/internal/server.ts";
import { TestDevice, connect, startTestServer, tempDir } from "./support.ts";
import { ServerError } from "../src/internal/errors.ts";
import { openSqliteServerStore } from "../src/internal/store/sqlite-server-store.ts";
import type { ServerStore } from "../src/internal/store/server-store.ts";
import { generateNoiseKeyPair } from "@pairwise/transport";

type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

const refusal = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(ClientError.is(err, "ServerRefused"), String(err)).toBe(true);
  return (err as ClientError).serverCode;
};

/** Encrypts a text to every verified device of `to` and submits it; resolves with the answer. */
async function send(from: TestDevice, toAccount: string, text: string, messageId: string) {
  const sender = await createTextSender(from, toAccount);
  return from.conn.request({ case: "submitMessage", value: await sender.encrypt(text, messageId) });
}

async function receiveTexts(device: TestDevice, count: number): Promise<string[]> {
  await device.conn.request({ case: "startDelivery", value: {} });
  await device.waitFor(() => device.envelopes().length >= count);
  const out: string[] = [];
  for (const e of device.envelopes().slice(0, count)) {
    const r = await decryptContent(
      device.crypto,
      { accountId: e.senderAccount, deviceId: e.senderDevice },
      { type: e.type === 1 ? "prekey" : "message", body: e.body },
    );
    out.push(r.content.body.case === "text" ? r.content.body.value.body : "?");
    await device.conn.request({ case: "ack", value: { seqs: [e.seq] } });
  }
  return out;
}

/** The dedup keys in a test server's SQLite file, read on a connection of their own. */
function dedupKeys(srv: { dataDir: string }): string[] {
  const db = new Database(join(srv.dataDir, "relay.db"), { readonly: true });
  try {
    return db.prepare("SELECT key FROM dedup").pluck().all() as string[];
  } finally {
    db.close();
  }
}

/** Waits (bounded: 2 s) until the server holds `n` connections, then checks it does. */
async function connectionsDownTo(srv: Server, n: number): Promise<void> {
  for (let i = 0; i < 100 && srv.relay.connectionCount > n; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(srv.relay.connectionCount).toBe(n);
}

/** Whether `bytes` decode as a client frame whose request id the test's client may use. */
function claimsOwnRequestId(bytes: Uint8Array): boolean {
  try {
    const id = fromBinary(ClientFrameSchema, bytes).id;
    return id > 0n && id < 1_000_000n;
  } catch {
    return false;
  }
}

describe("relay server over Noise/WebSocket", () => {
  it("registers, serves devices and prekeys, delivers end to end and deletes on ack", async () => {
    const alice = await TestDevice.register(server, "alice");
    const bob = await TestDevice.register(server, "bob");
    const r = await send(alice, "bob", "hello bob", "m-1");
    expect(r.case).toBe("submit");
    expect(await receiveTexts(bob, 1)).toEqual(["hello bob"]);
    // After the ack nothing is redelivered on a new connection.
    await bob.reconnect(server);
    bob.pushes.length = 0;
    await bob.conn.request({ case: "startDelivery", value: {} });
    await bob.waitFor((ps) => ps.some((p) => p.kind.case === "queueEmpty"));
    expect(bob.envelopes()).toHaveLength(0);
  });

  it("keeps unacknowledged messages and redelivers them on the next connection", async () => {
    const carol = await TestDevice.register(server, "carol");
    const dave = await TestDevice.register(server, "dave");
    await send(carol, "dave", "one", "c-1");
    await send(carol, "dave", "two", "c-2");
    await dave.conn.request({ case: "startDelivery", value: {} });
    await dave.waitFor(() => dave.envelopes().length >= 2);
    await dave.reconnect(server); // no acks
    dave.pushes.length = 0;
    expect(await receiveTexts(dave, 2)).toEqual(["one", "two"]);
  });

  it("does not deliver a message past its expiry, even before expiry has deleted it", async () => {
    let clock = Date.now();
    const s = await startTestServer({ queueTtlMs: 60_000 }, { now: () => clock });
    try {
      const erin = await TestDevice.register(s, "erin");
      const fred = await TestDevice.register(s, "fred");
      await send(erin, "fred", "too late", "e-1");
      clock += 60_000;
      await send(erin, "fred", "in time", "e-2");
      // Both are still stored: no expiry run has deleted the first.
      expect(await s.relay.context.store.queueDepth()).toBe(2);
      expect(await receiveTexts(fred, 1)).toEqual(["in time"]);
      await fred.waitFor((ps) => ps.some((p) => p.kind.case === "queueEmpty"));
      expect(fred.envelopes()).toHaveLength(1);
    } finally {
      await s.close();
    }
  });

  it("refuses a submission whose device set does not match, listing missing and extra devices", async () => {
    const erin = await TestDevice.register(server, "erin");
    const frank = await TestDevice.register(server, "frank");
    await frank.linkCompanion(server);
    const err = await erin.conn
      .request({
        case: "submitMessage",
        value: {
          messageId: "x-1",
          copies: [
            {
              accountId: "frank",
              deviceId: 1,
              registrationId: 1,
              type: 1,
              body: new Uint8Array(10),
            },
            {
              accountId: "frank",
              deviceId: 9,
              registrationId: 1,
              type: 1,
              body: new Uint8Array(10),
            },
          ],
        },
      })
      .then(
        () => undefined,
        (e: unknown) => e as ClientError,
      );
    expect(err?.serverCode).toBe("MismatchedDevices");
    expect(err?.mismatches).toEqual([{ accountId: "frank", missing: [2], extra: [9], stale: [1] }]);
    // The well-formed send to both devices goes through.
    expect((await send(erin, "frank", "to both", "x-2")).case).toBe("submit");
  });

  it("deduplicates a resubmitted message id, keeping neither sender nor id in the clear", async () => {
    const gina = await TestDevice.register(server, "gina");
    await TestDevice.register(server, "hank");
    const id = newMessageId();
    await send(gina, "hank", "once", id);
    const again = expectResult(await send(gina, "hank", "once", id), "submit");
    expect(again.duplicate).toBe(true);
    // The kept key is a digest after the id's timestamp: no account, no message id.
    // Keyed by the server's static key (server-key.json, which a cluster's nodes share).
    const keys = dedupKeys(server);
    expect(keys).toContain(submissionKeys(loadServerKey(server.dataDir).privateKey)("gina|1", id));
    for (const k of keys) {
      expect(k).not.toContain("gina");
      expect(k).not.toContain(id.slice(14));
    }
  });

  it("enforces authorization: own queue, own account's list, own keys; primary-only operations", async () => {
    const ivan = await TestDevice.register(server, "ivan");
    const judy = await TestDevice.register(server, "judy");
    const ivan2 = await ivan.linkCompanion(server);
    await send(judy, "ivan", "private", "a-1");
    await ivan.conn.request({ case: "startDelivery", value: {} });
    await ivan.waitFor(() => ivan.envelopes().length >= 1);
    const seq = ivan.envelopes()[0]!.seq;
    // Judy acknowledging Ivan's seq deletes nothing of Ivan's.
    await judy.conn.request({ case: "ack", value: { seqs: [seq] } });
    await ivan.reconnect(server);
    ivan.pushes.length = 0;
    await ivan.conn.request({ case: "startDelivery", value: {} });
    await ivan.waitFor(() => ivan.envelopes().length >= 1);
    expect(ivan.envelopes()[0]!.seq).toBe(seq);
    // A companion cannot publish lists, allocate or remove devices.
    expect(
      await refusal(
        ivan2.conn.request({
          case: "publishDeviceList",
          value: { signedDeviceList: ivan.nextList([0, 1]) },
        }),
      ),
    ).toBe("Unauthorized");
    expect(await refusal(ivan2.conn.request({ case: "allocateCompanion", value: {} }))).toBe(
      "Unauthorized",
    );
    // Judy's primary cannot publish a list signed by Ivan's account key.
    expect(
      await refusal(
        judy.conn.request({
          case: "publishDeviceList",
          value: { signedDeviceList: ivan.nextList([0, 1]) },
        }),
      ),
    ).toBe("InvalidRequest");
    // Keys not signed by the device's own identity key are refused.
    const foreign = ivan.crypto.createKeyUpload({ oneTime: 1 });
    expect(
      await refusal(
        judy.conn.request({
          case: "uploadKeys",
          value: { kyberPrekeys: foreign.kyberPreKeys, prekeys: [] },
        }),
      ),
    ).toBe("InvalidRequest");
    // An unregistered connection can do nothing but register or provision.
    const stranger = await connect(server, generateNoiseKeyPair());
    expect(
      await refusal(stranger.request({ case: "fetchDevices", value: { accountId: "ivan" } })),
    ).toBe("Unauthorized");
    await stranger.close();
  });

  it("refuses a stale device list and a registration that does not verify", async () => {
    const kate = await TestDevice.register(server, "kate");
    const older = kate.nextList([0]);
    await kate.conn.request({
      case: "publishDeviceList",
      value: { signedDeviceList: kate.nextList([0]) },
    });
    expect(
      await refusal(
        kate.conn.request({ case: "publishDeviceList", value: { signedDeviceList: older } }),
      ),
    ).toBe("StaleDeviceList");
    expect(await refusal(TestDevice.register(server, "kate"))).toBe("Conflict");
  });

  it("links a companion, delivers to it, and after removal disconnects it and stops delivery", async () => {
    const lena = await TestDevice.register(server, "lena");
    const mike = await TestDevice.register(server, "mike");
    const lena2 = await lena.linkCompanion(server, "laptop");
    const own = expectResult(
      await lena.conn.request({ case: "listOwnDevices", value: {} }),
      "ownDevices",
    );
    expect(own.devices.map((d) => [d.deviceId, d.name])).toEqual([
      [1, "test device"],
      [lena2.deviceId, "laptop"],
    ]);
    await send(mike, "lena", "both of you", "l-1");
    expect(await receiveTexts(lena2, 1)).toEqual(["both of you"]);
    await lena.conn.request({
      case: "removeDevice",
      value: { deviceId: lena2.deviceId, signedDeviceList: lena.nextList([0]) },
    });
    await lena2.waitFor((ps) => ps.some((p) => p.kind.case === "deviceRemoved"));
    await lena2.conn.ended;
    await lena2.reconnect(server);
    expect(await refusal(lena2.conn.request({ case: "startDelivery", value: {} }))).toBe(
      "Unauthorized",
    );
    const set = expectResult(
      await mike.conn.request({ case: "fetchDevices", value: { accountId: "lena" } }),
      "devices",
    );
    expect(set.devices.map((d) => d.deviceId)).toEqual([1]);
  });

  it("limits companions per account", async () => {
    const nina = await TestDevice.register(server, "nina");
    for (let i = 0; i < 4; i++) await nina.conn.request({ case: "allocateCompanion", value: {} });
    expect(await refusal(nina.conn.request({ case: "allocateCompanion", value: {} }))).toBe(
      "TooManyDevices",
    );
  });

  it("fans a group message out to every member device but the sender's, after a membership notice", async () => {
    const olga = await TestDevice.register(server, "olga");
    const pete = await TestDevice.register(server, "pete");
    const quin = await TestDevice.register(server, "quin");
    const group = expectResult(
      await olga.conn.request({
        case: "groupCreate",
        value: { name: "team", members: ["pete", "quin"] },
      }),
      "group",
    );
    expect(group.members.sort()).toEqual(["olga", "pete", "quin"]);
    await olga.conn.request({
      case: "submitGroupMessage",
      value: {
        groupId: group.groupId,
        messageId: "g-1",
        body: new Uint8Array([1, 2, 3]),
        groupRevision: group.revision,
      },
    });
    const notice = (e: { body: Uint8Array } | undefined) =>
      fromBinary(GroupNoticeSchema, e?.body ?? new Uint8Array());
    for (const d of [pete, quin]) {
      await d.conn.request({ case: "startDelivery", value: {} });
      await d.waitFor(() => d.envelopes().length >= 2);
      // The relay's notice of the group (server-originated: no sender), then the message.
      expect(d.envelopes()[0]).toMatchObject({
        groupId: group.groupId,
        type: 4,
        senderAccount: "",
        senderDevice: 0,
      });
      expect(notice(d.envelopes()[0])).toMatchObject({
        groupId: group.groupId,
        revision: 1n,
        name: "team",
        members: ["olga", "pete", "quin"],
        added: ["olga", "pete", "quin"],
        removed: [],
        by: "olga",
      });
      expect(d.envelopes()[1]).toMatchObject({
        groupId: group.groupId,
        type: 3,
        senderAccount: "olga",
      });
    }
    const removed = expectResult(
      await olga.conn.request({
        case: "groupUpdate",
        value: { groupId: group.groupId, remove: ["quin"] },
      }),
      "group",
    );
    expect(
      await refusal(
        olga.conn.request({
          case: "submitGroupMessage",
          value: {
            groupId: group.groupId,
            messageId: "g-2",
            body: new Uint8Array([4]),
            groupRevision: group.revision,
          },
        }),
      ),
    ).toBe("Conflict");
    await olga.conn.request({
      case: "submitGroupMessage",
      value: {
        groupId: group.groupId,
        messageId: "g-3",
        body: new Uint8Array([5]),
        groupRevision: removed.revision,
      },
    });
    await pete.waitFor(() => pete.envelopes().length >= 4);
    await quin.waitFor(() => quin.envelopes().length >= 3);
    for (const d of [pete, quin])
      expect(notice(d.envelopes()[2])).toMatchObject({
        revision: 2n,
        members: ["olga", "pete"],
        added: [],
        removed: ["quin"],
        by: "olga",
      });
    expect(pete.envelopes()[3]).toMatchObject({ type: 3, messageId: "g-3" });
    expect(quin.envelopes()).toHaveLength(3); // nothing after the removal but its notice
    expect(
      await refusal(quin.conn.request({ case: "groupGet", value: { groupId: group.groupId } })),
    ).toBe("NotFound");
  });

  it("stores encrypted blobs in chunks and checks their digest", async () => {
    const rita = await TestDevice.register(server, "rita");
    const data = new Uint8Array(300_000).map((_, i) => i % 251);
    const sha256 = createHash("sha256").update(data).digest();
    const first = expectResult(
      await rita.conn.request({
        case: "blobUpload",
        value: { totalSize: BigInt(data.length), offset: 0n, data: data.subarray(0, 200_000) },
      }),
      "blobUpload",
    );
    const done = expectResult(
      await rita.conn.request({
        case: "blobUpload",
        value: {
          uploadId: first.uploadId,
          offset: 200_000n,
          data: data.subarray(200_000),
          final: true,
          sha256,
        },
      }),
      "blobUpload",
    );
    const part = expectResult(
      await rita.conn.request({
        case: "blobDownload",
        value: { blobId: done.blobId, offset: 100_000n, length: 50_000 },
      }),
      "blobData",
    );
    expect(part.data).toEqual(data.subarray(100_000, 150_000));
    expect(part.totalSize).toBe(300_000n);
    const bad = expectResult(
      await rita.conn.request({
        case: "blobUpload",
        value: { totalSize: 3n, offset: 0n, data: new Uint8Array(3) },
      }),
      "blobUpload",
    );
    expect(
      await refusal(
        rita.conn.request({
          case: "blobUpload",
          value: {
            uploadId: bad.uploadId,
            offset: 3n,
            data: new Uint8Array(0),
            final: true,
            sha256,
          },
        }),
      ),
    ).toBe("InvalidRequest");
  });

  it("answers random and mutated frames with errors, never crashing or storing anything", async () => {
    const sam = await TestDevice.register(server, "sam");
    const before = await server.relay.context.store.queueDepth();
    const raw = sam.conn.transport;
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 512 }), async (bytes) => {
        // Garbage that happens to decode as a frame with a small request id would be answered
        // under an id this connection's own requests use next (the client matches answers by
        // id), which tests the test's client, not the server.
        fc.pre(!claimsOwnRequestId(bytes));
        await raw.send(bytes);
      }),
      { numRuns: 150 },
    );
    // The connection still works and nothing was enqueued.
    expect(
      expectResult(await sam.conn.request({ case: "getPrekeyCount", value: {} }), "prekeyCount")
        .prekeys,
    ).toBe(10);
    expect(await server.relay.context.store.queueDepth()).toBe(before);
    expect(decodeContent).toBeDefined();
  });

  it("pushes mail committed while the device is online from memory, in order and once", async () => {
    const metric = async (name: string) => {
      const text = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
      return Number(new RegExp(`^${name} (\\d+)`, "m").exec(text)?.[1] ?? NaN);
    };
    const senders = [
      await TestDevice.register(server, "memory-a"),
      await TestDevice.register(server, "memory-b"),
    ];
    const ruth = await TestDevice.register(server, "ruth");
    await ruth.conn.request({ case: "startDelivery", value: {} });
    await ruth.waitFor((ps) => ps.some((p) => p.kind.case === "queueEmpty"));
    const PER_SENDER = 150;
    const submit = (from: TestDevice, i: number) =>
      from.conn.request({
        case: "submitMessage",
        value: {
          messageId: `${from.accountId}-${i}`,
          copies: [
            {
              accountId: "ruth",
              deviceId: 1,
              registrationId: ruth.crypto.registrationId,
              type: 2,
              body: new Uint8Array([i % 256, 1, 2, 3]),
            },
          ],
        },
      });
    // One at a time, each pushed before the next is submitted: every one comes from memory.
    const readsBefore = await metric("pairwise_queue_reads_total");
    for (let i = 0; i < 30; i++) {
      await submit(senders[1]!, PER_SENDER + i);
      await ruth.waitFor(() => ruth.envelopes().length > i);
    }
    expect((await metric("pairwise_queue_reads_total")) - readsBefore).toBe(0);
    await ruth.conn.request({ case: "ack", value: { seqs: ruth.envelopes().map((e) => e.seq) } });
    ruth.pushes.length = 0;
    // Two senders with 16 submissions in flight each; halfway, a group notice (queued by another
    // path, whose wake-up carries no message) forces a queue read among the memory pushes.
    await Promise.all(
      senders.map(async (from) => {
        let next = 0;
        await Promise.all(
          Array.from({ length: 16 }, async () => {
            while (next < PER_SENDER) {
              const i = next++;
              if (from === senders[0] && i === PER_SENDER / 2) {
                await from.conn.request({
                  case: "groupCreate",
                  value: { name: "mid-burst", members: ["ruth"] },
                });
              }
              await submit(from, i);
            }
          }),
        );
      }),
    );
    await ruth.waitFor(() => ruth.envelopes().length >= 2 * PER_SENDER + 1);
    await new Promise((r) => setTimeout(r, 200)); // nothing more (no duplicates) arrives
    const envelopes = ruth.envelopes();
    expect(envelopes).toHaveLength(2 * PER_SENDER + 1);
    const seqs = envelopes.map((e) => Number(e.seq));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    for (const from of senders) {
      const ids = envelopes
        .filter((e) => e.senderAccount === from.accountId)
        .map((e) => e.messageId);
      // Each sender's messages in the order the relay accepted them: its own submission order
      // within each window of 16 in flight; all of them, once.
      expect(new Set(ids).size).toBe(PER_SENDER);
    }
    // Everything acknowledged leaves nothing to redeliver.
    await ruth.conn.request({ case: "ack", value: { seqs: envelopes.map((e) => e.seq) } });
    await ruth.reconnect(server);
    ruth.pushes.length = 0;
    await ruth.conn.request({ case: "startDelivery", value: {} });
    await ruth.waitFor((ps) => ps.some((p) => p.kind.case === "queueEmpty"));
    expect(ruth.envelopes()).toHaveLength(0);
  });

  it("keeps every dedup key as a digest, group submissions included", () => {
    // Runs after the tests above (one-to-one, group and targeted submissions): none of their
    // keys names a sender.
    const keys = dedupKeys(server);
    expect(keys.length).toBeGreaterThan(5);
    for (const k of keys) expect(k).toMatch(/^([0-9a-f]{12}\.)?[A-Za-z0-9_-]{22}$/);
  });

  it("serves /healthz and /metrics", async () => {
    const base = `http://127.0.0.1:${server.port}`;
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    for (const name of [
      "pairwise_connections",
      "pairwise_queue_depth",
      "pairwise_messages_submitted_total",
      "pairwise_messages_delivered_total",
      "pairwise_messages_acknowledged_total",
      "pairwise_errors_total",
    ]) {
      expect(metrics).toContain(name);
    }
    expect(metrics).toMatch(/pairwise_errors_total\{code="InvalidRequest"\} \d+/);
    // Node's process metrics, but none that walks every file descriptor or handle per scrape.
    expect(metrics).toMatch(/^pairwise_server_process_nodejs_eventloop_lag_max_seconds \S+$/m);
    expect(metrics).toMatch(/^pairwise_server_process_process_resident_memory_bytes \d+$/m);
    for (const walking of ["open_fds", "active_handles", "active_resources"]) {
      expect(metrics).not.toContain(`pairwise_server_process_${walking}`);
      expect(metrics).not.toContain(`pairwise_server_process_nodejs_${walking}`);
    }
    // The per-message counters are added up at scrape time: counted once, not again by the next scrape.
    const count = (text: string, series: string) =>
      Number(new RegExp(`^${series.replace(/[{}]/g, "\\$&")} (\\d+)$`, "m").exec(text)?.[1]);
    const series = [
      "pairwise_messages_submitted_total",
      "pairwise_messages_delivered_total",
      "pairwise_messages_acknowledged_total",
      'pairwise_requests_total{type="submitMessage"}',
    ];
    for (const s of series) expect(count(metrics, s)).toBeGreaterThan(0);
    const again = await (await fetch(`${base}/metrics`)).text();
    for (const s of series) expect(count(again, s)).toBe(count(metrics, s));
  });
});

describe("companion expiry", () => {
  const DAY = 24 * 60 * 60 * 1000;
  /**
   * A test server on its clock `now` whose SQLite store has the methods `replace` gives in place
   * of its own (`replace` gets the store itself, to call through to).
   */
  const serverReplacing = (
    now: () => number,
    replace: (sqlite: ServerStore) => Partial<ServerStore>,
  ) => {
    const dataDir = tempDir();
    const sqlite = openSqliteServerStore({ path: join(dataDir, "relay.db") });
    const methods = replace(sqlite);
    const store = new Proxy(sqlite, {
      get: (target, prop, receiver) =>
        Object.hasOwn(methods, prop)
          ? methods[prop as keyof ServerStore]
          : (Reflect.get(target, prop, receiver) as unknown),
    });
    return startTestServer({ dataDir }, { now, store });
  };

  it("keeps a companion while its primary is online, and logs it out once the primary has been away for the expiry", async () => {
    let clock = Date.now();
    const srv = await startTestServer({}, { now: () => clock });
    try {
      const pia = await TestDevice.register(srv, "pia");
      const laptop = await pia.linkCompanion(srv, "laptop");
      const removed = () => laptop.pushes.some((p) => p.kind.case === "deviceRemoved");
      const staleNow = () => srv.relay.context.store.listStaleCompanions(clock - 14 * DAY);
      // The primary stays connected for 20 days. Each pass writes its last_seen again, so the
      // store itself never lists the companion as stale (which any node of a cluster would act on).
      for (let day = 5; day <= 20; day += 5) {
        clock += 5 * DAY;
        await srv.relay.runHousekeeping();
        expect(await staleNow()).toEqual([]);
      }
      await laptop.conn.request({ case: "startDelivery", value: {} });
      expect(removed()).toBe(false);
      // The primary leaves on day 20: 13 days later the companion is still linked, 15 days later
      // it is logged out.
      await pia.conn.close();
      await connectionsDownTo(srv, 1);
      clock += 13 * DAY;
      await srv.relay.runHousekeeping();
      expect(await srv.relay.context.store.getDevice("pia", laptop.deviceId)).toBeDefined();
      expect(removed()).toBe(false);
      clock += 2 * DAY;
      await srv.relay.runHousekeeping();
      await laptop.waitFor(removed);
      await laptop.conn.ended;
      await laptop.reconnect(srv);
      expect(await refusal(laptop.conn.request({ case: "startDelivery", value: {} }))).toBe(
        "Unauthorized",
      );
    } finally {
      await srv.close();
    }
  });

  it("keeps the companions of a primary that comes back while a pass runs", async () => {
    let clock = Date.now();
    // Writes of last_seen wait for this gate: a connect whose write has not landed yet.
    let openGate = () => {};
    let gate = Promise.resolve();
    const srv = await serverReplacing(
      () => clock,
      (sqlite) => ({
        touchDevice: async (...args) => {
          await gate;
          return sqlite.touchDevice(...args);
        },
      }),
    );
    try {
      const qin = await TestDevice.register(srv, "qin");
      const laptop = await qin.linkCompanion(srv, "laptop");
      await qin.conn.close();
      await connectionsDownTo(srv, 1);
      clock += 15 * DAY;
      gate = new Promise((resolve) => (openGate = resolve));
      await qin.reconnect(srv);
      // Answered only once the server has bound the connection (and asked for its write).
      await qin.conn.request({ case: "ping", value: {} });
      const pass = srv.relay.runHousekeeping();
      setTimeout(openGate, 100);
      await pass;
      expect(await srv.relay.context.store.getDevice("qin", laptop.deviceId)).toBeDefined();
      expect(laptop.pushes.some((p) => p.kind.case === "deviceRemoved")).toBe(false);
    } finally {
      openGate();
      await srv.close();
    }
  });

  it("keeps the companions of a primary connected here even when its last_seen could not be written", async () => {
    let clock = Date.now();
    let failTouches = false;
    const srv = await serverReplacing(
      () => clock,
      (sqlite) => ({
        touchDevice: (...args) =>
          failTouches
            ? Promise.reject(new ServerError("Unavailable", "database unavailable"))
            : sqlite.touchDevice(...args),
      }),
    );
    try {
      const ren = await TestDevice.register(srv, "ren");
      const laptop = await ren.linkCompanion(srv, "laptop");
      // The primary stays connected, but none of its last_seen writes land: the store lists its
      // companion as stale, and only the primary's connection here keeps it.
      failTouches = true;
      clock += 15 * DAY;
      await srv.relay.runHousekeeping();
      expect(await srv.relay.context.store.listStaleCompanions(clock - 14 * DAY)).toEqual([
        { accountId: "ren", deviceId: laptop.deviceId },
      ]);
      expect(await srv.relay.context.store.getDevice("ren", laptop.deviceId)).toBeDefined();
      expect(laptop.pushes.some((p) => p.kind.case === "deviceRemoved")).toBe(false);
    } finally {
      failTouches = false;
      await srv.close();
    }
  });

  it("goes on with the pass when a primary publishes a new device list just before a removal", async () => {
    let clock = Date.now();
    // The account read that precedes uma's removal is taken just before uma's primary publishes
    // a newer list: the removal meets StaleDeviceList.
    let publishAfterRead: string | undefined;
    const srv = await serverReplacing(
      () => clock,
      (sqlite) => ({
        getAccount: async (accountId) => {
          const account = await sqlite.getAccount(accountId);
          if (account && accountId === publishAfterRead) {
            publishAfterRead = undefined;
            await sqlite.updateDeviceList({
              accountId,
              signedDeviceList: account.signedDeviceList,
              timestamp: account.deviceListTimestamp + 1,
            });
          }
          return account;
        },
      }),
    );
    try {
      const uma = await TestDevice.register(srv, "uma");
      const umaLaptop = await uma.linkCompanion(srv, "laptop");
      const vic = await TestDevice.register(srv, "vic");
      const vicLaptop = await vic.linkCompanion(srv, "laptop");
      await uma.conn.close();
      await vic.conn.close();
      await connectionsDownTo(srv, 2);
      clock += 15 * DAY;
      publishAfterRead = "uma";
      await srv.relay.runHousekeeping();
      // uma's is left for the next pass; vic's, listed after it, is removed in this one.
      expect(await srv.relay.context.store.getDevice("uma", umaLaptop.deviceId)).toBeDefined();
      expect(await srv.relay.context.store.getDevice("vic", vicLaptop.deviceId)).toBeUndefined();
      await srv.relay.runHousekeeping();
      expect(await srv.relay.context.store.getDevice("uma", umaLaptop.deviceId)).toBeUndefined();
    } finally {
      await srv.close();
    }
  });

  it("keeps the companions of a primary that another node sees while the pass runs", async () => {
    let clock = Date.now();
    // Just before the removal (the account read that precedes it), the primary connects to
    // another node of the cluster, which writes its last_seen to the shared store.
    let otherNodeSees: string | undefined;
    const srv = await serverReplacing(
      () => clock,
      (sqlite) => ({
        getAccount: async (accountId) => {
          if (accountId === otherNodeSees) await sqlite.touchDevice(accountId, 1, clock);
          return sqlite.getAccount(accountId);
        },
      }),
    );
    try {
      const sol = await TestDevice.register(srv, "sol");
      const laptop = await sol.linkCompanion(srv, "laptop");
      await sol.conn.close();
      await connectionsDownTo(srv, 1);
      clock += 15 * DAY;
      otherNodeSees = "sol";
      await srv.relay.runHousekeeping();
      expect(await srv.relay.context.store.getDevice("sol", laptop.deviceId)).toBeDefined();
      expect(laptop.pushes.some((p) => p.kind.case === "deviceRemoved")).toBe(false);
      // Away for the expiry again: now it goes.
      otherNodeSees = undefined;
      clock += 15 * DAY;
      await srv.relay.runHousekeeping();
      await laptop.waitFor(() => laptop.pushes.some((p) => p.kind.case === "deviceRemoved"));
      expect(await srv.relay.context.store.getDevice("sol", laptop.deviceId)).toBeUndefined();
    } finally {
      await srv.close();
    }
  });
});
