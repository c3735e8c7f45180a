import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KeyDirectory, createTestDevice, type TestDevice } from "../../test/support.ts";
import { decodeContent, decryptContent, encodeContent, encryptContent } from "./content.ts";
import { decodePreKeyBundle } from "./prekey-bundle.ts";
import { CoreError } from "./errors.ts";

const target = (d: TestDevice, keys: KeyDirectory, from: TestDevice) => ({
  address: d.address,
  identityPublic: d.crypto.identityPublic,
  ...(from.crypto.hasSession(d.address) ? {} : { bundle: keys.bundle(d.address) }),
});

describe("content: multi-device fan-out with sync copies and deduplication", () => {
  it("every device of the recipient and of the sender gets exactly one copy", async () => {
    const keys = new KeyDirectory();
    const alice = [1, 2, 3].map((d) => createTestDevice({ accountId: "alice", deviceId: d }, keys));
    const bob = [1, 2].map((d) => createTestDevice({ accountId: "bob", deviceId: d }, keys));
    const [sender, ...mine] = alice;
    const toBob = await encryptContent(
      sender!.crypto,
      bob.map((b) => target(b, keys, sender!)),
      {
        messageId: "m1",
        timestamp: 1n,
        body: { case: "text", value: { body: "hi bob" } },
      },
    );
    const sync = await encryptContent(
      sender!.crypto,
      mine.map((d) => target(d, keys, sender!)),
      {
        messageId: "m1",
        timestamp: 1n,
        sync: { originalRecipient: "bob" },
        body: { case: "text", value: { body: "hi bob" } },
      },
    );
    const stored: string[] = [];
    for (const [i, b] of bob.entries()) {
      const r = await decryptContent(b.crypto, sender!.address, toBob[i]!, {
        record: (c) => stored.push(`${b.address.accountId}.${b.address.deviceId}:${c.messageId}`),
      });
      expect(r.content.body.case === "text" && r.content.body.value.body).toBe("hi bob");
    }
    for (const [i, d] of mine.entries()) {
      const r = await decryptContent(d.crypto, sender!.address, sync[i]!, {
        record: (c) => stored.push(`${d.address.accountId}.${d.address.deviceId}:${c.messageId}`),
      });
      expect(r.content.sync?.originalRecipient).toBe("bob");
    }
    expect(stored.sort()).toEqual(["alice.2:m1", "alice.3:m1", "bob.1:m1", "bob.2:m1"]);

    // The sender re-encrypts the same message id (e.g. answering a retry): shown once only.
    const [again] = await encryptContent(sender!.crypto, [target(bob[0]!, keys, sender!)], {
      messageId: "m1",
      timestamp: 1n,
      body: { case: "text", value: { body: "hi bob" } },
    });
    const dup = await decryptContent(bob[0]!.crypto, sender!.address, again!, {
      record: () => stored.push("twice"),
    });
    expect(dup.duplicate).toBe(true);
    expect(stored).not.toContain("twice");
  });

  it("pads every content to a multiple of 160 bytes and refuses invalid content", () => {
    const padded = encodeContent({
      messageId: "x",
      body: { case: "typing", value: { started: true } },
    });
    expect(padded.length % 160).toBe(0);
    expect(decodeContent(padded).messageId).toBe("x");
    expect(() => encodeContent({ messageId: "", body: { case: "typing", value: {} } })).toThrow(
      CoreError,
    );
    expect(() => encodeContent({ messageId: "y" })).toThrow(CoreError);
  });
});

describe("decoders refuse random and mutated bytes with CoreError only", () => {
  const keys = new KeyDirectory();
  const bob = createTestDevice({ accountId: "bob", deviceId: 1 }, keys);
  const goodBundle = keys.bundle(bob.address);
  const goodContent = encodeContent({
    messageId: "m",
    body: { case: "text", value: { body: "hello" } },
  });
  const mutate = (bytes: Uint8Array) =>
    fc.tuple(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
      const b = bytes.slice();
      b[i]! ^= x;
      return b;
    });
  const onlyCoreError = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      if (!CoreError.is(e)) throw e;
    }
  };

  it("prekey bundles", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 3000 }), mutate(goodBundle)), (b) => {
        onlyCoreError(() => decodePreKeyBundle(b));
      }),
      { numRuns: 200 },
    );
  });

  it("contents", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 1000 }), mutate(goodContent)), (b) => {
        onlyCoreError(() => decodeContent(b));
      }),
      { numRuns: 200 },
    );
  });

  it("ciphertexts, leaving the session unchanged", async () => {
    const alice = createTestDevice({ accountId: "alice", deviceId: 1 }, keys);
    const [first] = await encryptContent(
      alice.crypto,
      [
        {
          address: bob.address,
          identityPublic: bob.crypto.identityPublic,
          bundle: keys.bundle(bob.address),
        },
      ],
      { messageId: "a", body: { case: "text", value: { body: "x" } } },
    );
    await decryptContent(bob.crypto, alice.address, first!);
    // Bob answers, so Alice's next message is a plain ratchet message whose every byte is under
    // its MAC. (A PreKeySignalMessage's outer fields are not authenticated once the session
    // exists: a flipped byte there still yields the genuine plaintext, which is harmless.)
    const [reply] = await encryptContent(
      bob.crypto,
      [{ address: alice.address, identityPublic: alice.crypto.identityPublic }],
      { messageId: "r", body: { case: "text", value: { body: "z" } } },
    );
    await decryptContent(alice.crypto, bob.address, reply!);
    const session = bob.store.get("session", "alice|1");
    const [ct] = await encryptContent(
      alice.crypto,
      [{ address: bob.address, identityPublic: bob.crypto.identityPublic }],
      { messageId: "b", body: { case: "text", value: { body: "y" } } },
    );
    expect(ct!.type).toBe("message");
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.uint8Array({ maxLength: 600 }), mutate(ct!.body)),
        fc.constantFrom("prekey" as const, "message" as const),
        async (body, type) => {
          const err = await decryptContent(bob.crypto, alice.address, { type, body }).then(
            () => "decrypted",
            (e: unknown) => e,
          );
          expect(err).not.toBe("decrypted");
          if (err !== null && !CoreError.is(err)) throw err as Error;
        },
      ),
      { numRuns: 100 },
    );
    expect(bob.store.get("session", "alice|1")).toEqual(session);
  });
});
