import { create, fromBinary } from "@bufbuild/protobuf";
import { createHash, randomBytes } from "node:crypto";
import { deflateRawSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  HistorySyncBundleSchema,
  HistorySyncNotificationSchema,
  type HistorySyncNotification,
} from "../gen/pairwise_pb.ts";
import { encryptBlob, generateBlobKey } from "./blob.ts";
import { concatBytes, utf8 } from "./bytes.ts";
import { CoreError, type CoreErrorCode } from "./errors.ts";
import {
  createHistorySyncParts,
  decodeHistoryBundle,
  encodeHistoryBundle,
  openHistorySyncParts,
  type HistoryBundleInit,
} from "./history-sync.ts";
import { encodeProto } from "./proto.ts";

async function codeOf(action: () => Promise<unknown>): Promise<CoreErrorCode | "none" | "other"> {
  try {
    await action();
    return "none";
  } catch (err) {
    return CoreError.is(err) ? err.code : "other";
  }
}

function sampleBundle(messagesPerChat: number): HistoryBundleInit {
  const chat = (id: string, n: number) => ({
    chatId: id,
    name: `chat ${id}`,
    messages: Array.from({ length: n }, (_, i) => ({
      messageId: `${id}-${i}`,
      senderAccount: i % 2 === 0 ? "alice" : "bob",
      senderDevice: 1 + (i % 3),
      timestamp: 1_700_000_000_000n + BigInt(i),
      fromMe: i % 2 === 0,
      content: {
        messageId: `${id}-${i}`,
        timestamp: 1_700_000_000_000n + BigInt(i),
        body: {
          case: "text" as const,
          value: { body: `message ${i} in ${id}: ${"x".repeat(i % 50)}` },
        },
      },
    })),
  });
  return {
    chats: [chat("bob", messagesPerChat), chat("group:abc", messagesPerChat), chat("carol", 0)],
  };
}

/** An in-memory blob store standing in for the server. */
function createStore() {
  const blobs = new Map<string, Uint8Array>();
  return {
    blobs,
    upload: (ciphertext: Uint8Array) => {
      const id = `blob-${blobs.size}`;
      blobs.set(id, ciphertext);
      return Promise.resolve(id);
    },
    fetch: (blobId: string) => {
      const blob = blobs.get(blobId);
      return blob === undefined ? Promise.reject(new Error("not found")) : Promise.resolve(blob);
    },
  };
}

describe("history bundle encoding", () => {
  it("round trips and fills in the version", async () => {
    const init = sampleBundle(20);
    const decoded = await decodeHistoryBundle(await encodeHistoryBundle(init));
    expect(decoded).toEqual(create(HistorySyncBundleSchema, { ...init, version: 1 }));
    expect(decoded.chats[1]?.messages[3]?.content?.body).toEqual({
      case: "text",
      value: expect.objectContaining({ body: "message 3 in group:abc: xxx" }) as unknown,
    });
  });

  it("rejects other versions both ways", async () => {
    expect(await codeOf(() => encodeHistoryBundle({ version: 2 }))).toBe("InvalidArgument");
    const v2 = deflateRawSync(
      encodeProto(HistorySyncBundleSchema, create(HistorySyncBundleSchema, { version: 2 })),
    );
    expect(await codeOf(() => decodeHistoryBundle(v2))).toBe("MalformedInput");
  });

  it("caps the encoder", async () => {
    expect(await codeOf(() => encodeHistoryBundle(sampleBundle(50), { maxBytes: 100 }))).toBe(
      "InputTooLarge",
    );
  });

  it("rejects a decompression bomb without inflating it all", async () => {
    const bomb = deflateRawSync(Buffer.alloc(32 * 1024 * 1024), { level: 9 });
    expect(bomb.length).toBeLessThan(64 * 1024);
    const before = process.memoryUsage().arrayBuffers;
    expect(
      await codeOf(() => decodeHistoryBundle(bomb, { maxDecompressedBytes: 1024 * 1024 })),
    ).toBe("InputTooLarge");
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
  });

  it("rejects truncated, trailing and non-protobuf data", async () => {
    const good = await encodeHistoryBundle(sampleBundle(5));
    expect(await codeOf(() => decodeHistoryBundle(good.subarray(0, good.length - 3)))).toBe(
      "MalformedInput",
    );
    expect(await codeOf(() => decodeHistoryBundle(concatBytes(good, Uint8Array.of(0))))).toBe(
      "MalformedInput",
    );
    expect(await codeOf(() => decodeHistoryBundle(deflateRawSync(utf8("\xff\xff\xff"))))).toBe(
      "MalformedInput",
    );
    expect(await codeOf(() => decodeHistoryBundle(new Uint8Array(0)))).toBe("MalformedInput");
  });

  it("random and mutated bytes only ever raise CoreError", async () => {
    const good = await encodeHistoryBundle(sampleBundle(3));
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }),
          fc
            .tuple(fc.nat({ max: good.length - 1 }), fc.integer({ min: 1, max: 255 }))
            .map(([at, x]) => {
              const bytes = new Uint8Array(good);
              bytes[at] = (bytes[at] ?? 0) ^ x;
              return bytes;
            }),
        ),
        async (bytes) => {
          const code = await codeOf(() => decodeHistoryBundle(bytes));
          expect(["none", "MalformedInput", "InputTooLarge"]).toContain(code);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("history sync parts", () => {
  async function makeParts(partBytes: number) {
    const store = createStore();
    const compressed = await encodeHistoryBundle(sampleBundle(200));
    const notification = await createHistorySyncParts(compressed, {
      upload: store.upload,
      maxPartBytes: partBytes,
    });
    return { store, compressed, notification };
  }

  it("round trips through several parts", async () => {
    const { store, compressed, notification } = await makeParts(1000);
    expect(notification.parts.length).toBe(Math.ceil(compressed.length / 1000));
    expect(notification.totalParts).toBe(notification.parts.length);
    expect(new Set(notification.parts.map((p) => p.blobId)).size).toBe(notification.parts.length);
    expect(new Set(notification.parts.map((p) => Buffer.from(p.key).toString("hex"))).size).toBe(
      notification.parts.length,
    );
    const bundle = await openHistorySyncParts(notification, store.fetch);
    expect(bundle).toEqual(create(HistorySyncBundleSchema, { ...sampleBundle(200), version: 1 }));
  });

  it("round trips as a single part and survives a protobuf trip of the notification", async () => {
    const { store, notification } = await makeParts(4 * 1024 * 1024);
    expect(notification.parts.length).toBe(1);
    const bytes = encodeProto(HistorySyncNotificationSchema, notification);
    const received = fromBinary(HistorySyncNotificationSchema, bytes);
    expect((await openHistorySyncParts(received, store.fetch)).chats.length).toBe(3);
  });

  it("rejects a tampered, resized or substituted part", async () => {
    const { store, notification } = await makeParts(1000);
    const id = notification.parts[1]?.blobId ?? "";
    const original = store.blobs.get(id) ?? new Uint8Array(0);
    const flipped = new Uint8Array(original);
    flipped[40] = (flipped[40] ?? 0) ^ 1;
    const other = encryptBlob(generateBlobKey(), randomBytes(original.length - 38));
    for (const bad of [
      flipped,
      original.subarray(1),
      concatBytes(original, Uint8Array.of(0)),
      other,
    ]) {
      store.blobs.set(id, bad);
      expect(await codeOf(() => openHistorySyncParts(notification, store.fetch))).toBe(
        "DecryptionFailed",
      );
    }
  });

  it("rejects parts out of order", async () => {
    const { store, notification } = await makeParts(1000);
    const [a, b, ...rest] = notification.parts;
    if (a === undefined || b === undefined) throw new Error("need two parts");
    const swapped = create(HistorySyncNotificationSchema, {
      ...notification,
      parts: [b, a, ...rest],
    });
    expect(await codeOf(() => openHistorySyncParts(swapped, store.fetch))).toBe("MalformedInput");
    const dropped = create(HistorySyncNotificationSchema, {
      parts: notification.parts.slice(0, -1),
      totalParts: notification.totalParts - 1,
    });
    expect(await codeOf(() => openHistorySyncParts(dropped, store.fetch))).toBe("MalformedInput");
  });

  it("rejects bad notifications before fetching anything", async () => {
    const { notification } = await makeParts(1000);
    let fetched = 0;
    const fetch = () => {
      fetched++;
      return Promise.resolve(new Uint8Array(0));
    };
    const variants: [HistorySyncNotification, CoreErrorCode][] = [
      [
        create(HistorySyncNotificationSchema, { ...notification, totalParts: 99 }),
        "MalformedInput",
      ],
      [create(HistorySyncNotificationSchema, {}), "MalformedInput"],
      [
        create(HistorySyncNotificationSchema, {
          ...notification,
          parts: notification.parts.map((p, i) =>
            i === 0 ? { ...p, key: new Uint8Array(31) } : p,
          ),
        }),
        "MalformedInput",
      ],
      [
        create(HistorySyncNotificationSchema, {
          ...notification,
          parts: notification.parts.map((p, i) =>
            i === 0 ? { ...p, ciphertextSize: 1n << 40n } : p,
          ),
        }),
        "InputTooLarge",
      ],
    ];
    for (const [bad, code] of variants) {
      expect(await codeOf(() => openHistorySyncParts(bad, fetch))).toBe(code);
    }
    expect(fetched).toBe(0);
  });

  it("rejects bad arguments and empty blob ids when creating parts", async () => {
    const store = createStore();
    expect(await codeOf(() => createHistorySyncParts(new Uint8Array(0), store))).toBe(
      "InvalidArgument",
    );
    expect(
      await codeOf(() => createHistorySyncParts(Uint8Array.of(1), { ...store, maxPartBytes: 0 })),
    ).toBe("InvalidArgument");
    expect(
      await codeOf(() =>
        createHistorySyncParts(new Uint8Array(2000), { ...store, maxPartBytes: 1 }),
      ),
    ).toBe("InputTooLarge");
    const upload = () => Promise.resolve("");
    expect(await codeOf(() => createHistorySyncParts(Uint8Array.of(1), { upload }))).toBe(
      "InvalidArgument",
    );
  });

  it("well-ordered parts holding random bytes only ever raise CoreError", async () => {
    const slicesArb = fc.array(fc.uint8Array({ maxLength: 200 }), { minLength: 1, maxLength: 4 });
    await fc.assert(
      fc.asyncProperty(slicesArb, async (slices) => {
        const store = createStore();
        const parts = [];
        for (const [index, slice] of slices.entries()) {
          const prefix = Buffer.alloc(8);
          prefix.writeUInt32BE(index, 0);
          prefix.writeUInt32BE(slices.length, 4);
          const key = generateBlobKey();
          const ciphertext = encryptBlob(key, concatBytes(prefix, slice));
          parts.push({
            blobId: await store.upload(ciphertext),
            key,
            sha256: createHash("sha256").update(ciphertext).digest(),
            ciphertextSize: BigInt(ciphertext.length),
          });
        }
        const notification = create(HistorySyncNotificationSchema, {
          parts,
          totalParts: parts.length,
        });
        const code = await codeOf(() => openHistorySyncParts(notification, store.fetch));
        expect(["none", "MalformedInput", "InputTooLarge"]).toContain(code);
      }),
      { numRuns: 100 },
    );
  });
});
