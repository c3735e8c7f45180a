import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CoreError } from "./errors.ts";
import {
  KeyDirectory,
  createTestDevice,
  reopen,
  tempDir,
  text,
  untext,
  type TestDevice,
} from "../../test/support.ts";

async function send(from: TestDevice, to: TestDevice, directory: KeyDirectory, body: string) {
  const bundle = from.crypto.hasSession(to.address) ? undefined : directory.bundle(to.address);
  const [ct] = await from.crypto.encrypt(
    [
      {
        address: to.address,
        identityPublic: to.crypto.identityPublic,
        ...(bundle ? { bundle } : {}),
      },
    ],
    text(body),
  );
  return ct!;
}

const receive = (
  to: TestDevice,
  from: TestDevice,
  ct: { type: "prekey" | "message"; body: Uint8Array },
) => to.crypto.decrypt(from.address, ct, (p) => untext(p));

describe("pairwise sessions (PQXDH + Double Ratchet)", () => {
  it("two parties talk over SQLite stores, surviving close and reopen mid-conversation", async () => {
    const dir = tempDir();
    const keys = new KeyDirectory();
    let alice = createTestDevice({ accountId: "alice", deviceId: 1 }, keys, {
      sqlitePath: join(dir, "a.db"),
    });
    let bob = createTestDevice({ accountId: "bob", deviceId: 1 }, keys, {
      sqlitePath: join(dir, "b.db"),
    });

    const first = await send(alice, bob, keys, "hello bob");
    expect(first.type).toBe("prekey");
    expect(await receive(bob, alice, first)).toBe("hello bob");
    expect(await receive(alice, bob, await send(bob, alice, keys, "hi alice"))).toBe("hi alice");

    alice = reopen(alice);
    bob = reopen(bob);
    for (let i = 0; i < 5; i++) {
      const ct = await send(alice, bob, keys, `m${i}`);
      expect(ct.type).toBe("message");
      expect(await receive(bob, alice, ct)).toBe(`m${i}`);
      expect(await receive(alice, bob, await send(bob, alice, keys, `r${i}`))).toBe(`r${i}`);
    }
    alice.store.close();
    bob.store.close();
  });

  it("one-time prekeys are consumed by the recipient in the same transaction as the message", async () => {
    const keys = new KeyDirectory();
    const alice = createTestDevice({ accountId: "alice", deviceId: 1 }, keys);
    const bob = createTestDevice({ accountId: "bob", deviceId: 1 }, keys, { oneTime: 3 });
    const before = bob.store.count("prekey");
    await receive(bob, alice, await send(alice, bob, keys, "x"));
    expect(bob.store.count("prekey")).toBe(before - 1);
  });

  it("handles out-of-order ciphertexts and refuses duplicates without changing state", async () => {
    const keys = new KeyDirectory();
    const alice = createTestDevice({ accountId: "alice", deviceId: 1 }, keys);
    const bob = createTestDevice({ accountId: "bob", deviceId: 1 }, keys);
    await receive(bob, alice, await send(alice, bob, keys, "setup"));
    await receive(alice, bob, await send(bob, alice, keys, "ack"));
    const cts = [];
    for (let i = 0; i < 6; i++) cts.push(await send(alice, bob, keys, `n${i}`));
    const order = [3, 0, 5, 1, 4, 2];
    for (const i of order) expect(await receive(bob, alice, cts[i]!)).toBe(`n${i}`);
    const session = bob.store.get("session", "alice|1");
    const err = await receive(bob, alice, cts[2]!).catch((e: unknown) => e);
    expect(CoreError.is(err, "DuplicateMessage")).toBe(true);
    expect(bob.store.get("session", "alice|1")).toEqual(session);
  });

  it("tampered and garbage ciphertexts are refused with CoreError and leave the session untouched", async () => {
    const keys = new KeyDirectory();
    const alice = createTestDevice({ accountId: "alice", deviceId: 1 }, keys);
    const bob = createTestDevice({ accountId: "bob", deviceId: 1 }, keys);
    await receive(bob, alice, await send(alice, bob, keys, "setup"));
    await receive(alice, bob, await send(bob, alice, keys, "ack"));
    const ct = await send(alice, bob, keys, "secret");
    expect(ct.type).toBe("message");
    const before = bob.store.get("session", "alice|1");
    const tampered = ct.body.slice();
    tampered[tampered.length - 3]! ^= 1;
    for (const bad of [tampered, new Uint8Array(0), text("garbage")]) {
      const err = await receive(bob, alice, { type: ct.type, body: bad }).catch((e: unknown) => e);
      expect(CoreError.is(err), String(err)).toBe(true);
      expect(String(err)).not.toContain("secret");
    }
    expect(bob.store.get("session", "alice|1")).toEqual(before);
    expect(await receive(bob, alice, ct)).toBe("secret");
  });

  it("a failing record callback rolls the session back, so the message can be processed again", async () => {
    const keys = new KeyDirectory();
    const alice = createTestDevice({ accountId: "alice", deviceId: 1 }, keys);
    const bob = createTestDevice({ accountId: "bob", deviceId: 1 }, keys);
    const ct = await send(alice, bob, keys, "durable");
    const preKeys = bob.store.count("prekey");
    await expect(
      bob.crypto.decrypt(alice.address, ct, () => {
        throw new Error("disk full");
      }),
    ).rejects.toBeInstanceOf(CoreError);
    expect(bob.store.get("session", "alice|1")).toBeUndefined();
    expect(bob.store.count("prekey")).toBe(preKeys);
    expect(await receive(bob, alice, ct)).toBe("durable");
  });

  it("serialises concurrent encrypts to one device: every ciphertext decrypts", async () => {
    const keys = new KeyDirectory();
    const alice = createTestDevice({ accountId: "alice", deviceId: 1 }, keys);
    const bob = createTestDevice({ accountId: "bob", deviceId: 1 }, keys);
    await receive(bob, alice, await send(alice, bob, keys, "setup"));
    await receive(alice, bob, await send(bob, alice, keys, "ack"));
    const cts = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        alice.crypto.encrypt(
          [{ address: bob.address, identityPublic: bob.crypto.identityPublic }],
          text(`c${i}`),
        ),
      ),
    );
    const got = await Promise.all(cts.map(([ct]) => receive(bob, alice, ct!)));
    expect(got.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `c${i}`).sort());
  });

  it("refuses a bundle whose identity key is not the ADV-verified one, storing nothing", async () => {
    const keys = new KeyDirectory();
    const alice = createTestDevice({ accountId: "alice", deviceId: 1 }, keys);
    const bob = createTestDevice({ accountId: "bob", deviceId: 1 }, keys);
    const mallory = createTestDevice({ accountId: "bob", deviceId: 2 }, keys);
    const err = await alice.crypto
      .encrypt(
        [
          {
            address: bob.address,
            identityPublic: bob.crypto.identityPublic,
            bundle: keys.bundle(mallory.address),
          },
        ],
        text("x"),
      )
      .catch((e: unknown) => e);
    expect(CoreError.is(err, "UntrustedDevice")).toBe(true);
    expect(alice.crypto.hasSession(bob.address)).toBe(false);
    expect(alice.store.count("identity")).toBe(0);
  });

  it("fans out to many devices in one transaction", async () => {
    const keys = new KeyDirectory();
    const alice = createTestDevice({ accountId: "alice", deviceId: 1 }, keys);
    const bobs = [1, 2, 3].map((d) => createTestDevice({ accountId: "bob", deviceId: d }, keys));
    const cts = await alice.crypto.encrypt(
      bobs.map((b) => ({
        address: b.address,
        identityPublic: b.crypto.identityPublic,
        bundle: keys.bundle(b.address),
      })),
      text("to all"),
    );
    expect(cts).toHaveLength(3);
    for (const [i, b] of bobs.entries()) expect(await receive(b, alice, cts[i]!)).toBe("to all");
  });
});
