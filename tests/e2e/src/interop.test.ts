// Two Pairwise servers as two providers ("prova", "provb") federated over loopback, with a
// recording proxy on each link: third-party chats, privacy controls, group admission, outage.
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  ClientError,
  createGroup,
  sendGroupText,
  updateGroup,
  type PairwiseDevice,
} from "@pairwise/client";
import {
  defineCapabilities,
  getInteropSettings,
  isThirdPartyChat,
  sendThirdParty,
  setInteropSettings,
  type AdapterCapabilities,
} from "@pairwise/interop-adapters";
import {
  InteropError,
  createFederation,
  openSqliteFederationStore,
} from "@pairwise/interop-adapters/federation";
import { loadServerKey, resolveConfig, startServer, type RunningServer } from "@pairwise/server";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { account, home, link, until } from "./support.ts";
import { startTapProxy, type TapProxy } from "./tap-proxy.ts";

const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");

let A: RunningServer;
let B: RunningServer;
let toA: TapProxy;
let toB: TapProxy;
const linkFrames: Uint8Array[] = [];
const dirA = home("prova");
const dirB = home("provb");

async function start(
  dir: string,
  provider: string,
  partner: { name: string; proxy: TapProxy; key: Uint8Array },
  ports: { port: number; federationPort: number } = { port: 0, federationPort: 0 },
  capabilities?: AdapterCapabilities,
): Promise<RunningServer> {
  return startServer({
    config: resolveConfig({
      dataDir: dir,
      host: "127.0.0.1",
      port: ports.port,
      logLevel: "silent",
      provider,
      federationPort: ports.federationPort,
      partners: [{ name: partner.name, url: partner.proxy.url, publicKey: b64u(partner.key) }],
    }),
    logger: pino({ level: "silent" }),
    federation: {
      onFrame: (f) => linkFrames.push(f.bytes),
      retryMs: { min: 50, max: 400 },
      ...(capabilities ? { capabilities } : {}),
    },
  });
}

beforeAll(async () => {
  const keyA = loadServerKey(dirA);
  const keyB = loadServerKey(dirB);
  toA = await startTapProxy();
  toB = await startTapProxy();
  A = await start(dirA, "prova", { name: "provb", proxy: toB, key: keyB.publicKey });
  // provb declares that it carries no reactions (nor stickers, nor timers).
  B = await start(
    dirB,
    "provb",
    { name: "prova", proxy: toA, key: keyA.publicKey },
    { port: 0, federationPort: 0 },
    defineCapabilities(true, ["text", "photos", "videos", "voiceNotes", "files", "replies"]),
  );
  toA.target(A.federation!.port);
  toB.target(B.federation!.port);
});

afterAll(async () => {
  await A.close();
  await B.close();
  await toA.close();
  await toB.close();
});

function contains(haystacks: readonly Uint8Array[], needle: Uint8Array): boolean {
  const n = Buffer.from(needle);
  return haystacks.some((h) => Buffer.from(h).includes(n));
}

async function refusal(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return ClientError.is(err) ? (err.serverCode ?? err.code) : String(err);
  }
}

/** GroupGet through a device's own server (which asks the group's host when it is remote). */
async function getGroup(d: PairwiseDevice, groupId: string): Promise<{ members: string[] }> {
  const r = await d.requireConnection().request({ case: "groupGet", value: { groupId } });
  if (r.case !== "group") throw new Error(`unexpected answer ${String(r.case)}`);
  return { members: [...r.value.members] };
}

describe("federation between two providers", () => {
  let alice: PairwiseDevice;
  let bob: PairwiseDevice;

  it("third-party chats are off by default: no sending, and an un-opted user is undiscoverable", async () => {
    alice = await account(A, "alice");
    bob = await account(B, "bob");
    const s = await getInteropSettings(alice);
    expect(s).toMatchObject({ provider: "prova", partners: ["provb"], enabled: [] });
    // Alice has not enabled provb: her own server refuses.
    expect(await refusal(alice.sendText("bob@provb", "x"))).toBe("Unauthorized");
    await setInteropSettings(alice, { enable: ["provb"] });
    // Bob has not enabled prova: he looks exactly like no account at all.
    expect(await refusal(alice.refreshContact("bob@provb"))).toBe("NotFound");
    expect(await refusal(alice.refreshContact("nobody@provb"))).toBe("NotFound");
    expect(await refusal(alice.sendText("bob@provb", "x"))).toBe("NotFound");
    // A provider that is not a partner cannot be enabled.
    expect(await refusal(setInteropSettings(alice, { enable: ["provz"] }))).toBe("NotFound");
  }, 60_000);

  it("a 1:1 chat with media crosses the link with no plaintext on it", async () => {
    await setInteropSettings(bob, { enable: ["prova"] });
    await bob.startReceiving();
    await alice.startReceiving();
    const text = `hello bob ${randomBytes(8).toString("hex")}`;
    await alice.sendText("bob@provb", text);
    await until(() => bob.history("alice@prova").some((m) => m.text === text), 20_000);
    expect(isThirdPartyChat("alice@prova")).toBe(true);

    const photo = randomBytes(300_000);
    const path = join(home("photo"), "photo.jpg");
    writeFileSync(path, photo);
    await alice.sendFile("bob@provb", path, { caption: "a photo" });
    await until(() => bob.history("alice@prova").some((m) => m.file !== undefined), 30_000);
    await bob.drained(30_000);
    const file = bob.history("alice@prova").find((m) => m.file)!.file!;
    expect(createHash("sha256").update(readFileSync(file)).digest("hex")).toBe(
      createHash("sha256").update(photo).digest("hex"),
    );

    const reply = `hi alice ${randomBytes(8).toString("hex")}`;
    await bob.sendText("alice@prova", reply);
    await until(() => alice.history("bob@provb").some((m) => m.text === reply), 20_000);

    // Everything that crossed: the link's frames after Noise decryption, and the raw TCP bytes.
    expect(linkFrames.length).toBeGreaterThan(0);
    const everything = [...linkFrames, ...toA.bytes, ...toB.bytes];
    for (const secret of [text, reply, "a photo"])
      expect(contains(everything, Buffer.from(secret))).toBe(false);
    for (let off = 0; off + 64 <= photo.length; off += 50_000)
      expect(contains(everything, photo.subarray(off, off + 64))).toBe(false);
    // Nor any device's private identity key (the public halves do cross: ADV needs them).
    for (const d of [alice, bob]) {
      expect(contains(everything, d.crypto.identity.privateKey.serialize())).toBe(false);
      expect(contains(everything, d.crypto.identity.publicKey.serialize())).toBe(true);
    }
  }, 90_000);

  it("a partner declaring a weaker protocol is refused with a clear error", async () => {
    // Someone holding prova's provider key but declaring X3DH (no post-quantum) talks to provb.
    const rogue = createFederation({
      provider: "prova",
      staticKeyPair: loadServerKey(dirA),
      partners: [{ name: "provb", url: B.federation!.url, publicKey: B.publicKey }],
      store: openSqliteFederationStore(join(home("rogue"), "interop.db")),
      declare: { name: "signal-x3dh", version: 3 },
      handler: {} as never,
    });
    const err = await rogue
      .request("provb", { case: "fetchDevices", value: { accountId: "bob", asker: "x" } })
      .catch((e: unknown) => e);
    expect(InteropError.is(err, "WeakProtocol")).toBe(true);
    expect((err as Error).message).toContain("signal-x3dh v3");
    expect((err as Error).message).toContain("signal-pqxdh");
    expect(rogue.partnerState("provb")).toBe("refused");
    await rogue.close();

    // A provider key that is not allow-listed is refused too.
    const stranger = createFederation({
      provider: "provx",
      staticKeyPair: loadServerKey(home("provx")),
      partners: [{ name: "provb", url: B.federation!.url, publicKey: B.publicKey }],
      store: openSqliteFederationStore(join(home("provx-db"), "interop.db")),
      handler: {} as never,
    });
    const err2 = await stranger
      .request("provb", { case: "fetchDevices", value: { accountId: "bob", asker: "x" } })
      .catch((e: unknown) => e);
    expect(InteropError.is(err2, "NotAllowed")).toBe(true);
    await stranger.close();
  }, 30_000);

  it("cross-provider groups admit only users who opted in, tell the adder why not, and reach the admitted", async () => {
    const carol = await account(B, "carol"); // never enables prova
    const dave = await account(B, "dave");
    await setInteropSettings(dave, { enable: ["prova"], groups: "everyone" });
    const frank = await account(A, "frank"); // local, never enables provb
    await setInteropSettings(bob, { groups: "nobody" });
    let g = await createGroup(alice, "mixed", ["bob@provb", "carol@provb", "dave@provb", "frank"]);
    expect(g.members.sort()).toEqual(["alice", "dave@provb"]);
    expect(g.refused?.sort((a, b) => a.accountId.localeCompare(b.accountId))).toEqual([
      { accountId: "bob@provb", reason: "groups-nobody" },
      { accountId: "carol@provb", reason: "interop-off" },
      { accountId: "frank", reason: "interop-off" },
    ]);
    // "contacts": bob has written to alice, so alice may add him; nobody else from prova may.
    await setInteropSettings(bob, { groups: "contacts" });
    g = await updateGroup(alice, g.id, { add: ["bob@provb"] });
    expect(g.members).toContain("bob@provb");
    await setInteropSettings(frank, { enable: ["provb"] });
    const g2 = await createGroup(frank, "frank's", ["bob@provb"]);
    expect(g2.refused).toEqual([{ accountId: "bob@provb", reason: "groups-contacts-only" }]);
    // The admitted remote members get the group's messages (Sender Keys over pairwise sessions,
    // then one ciphertext per member through their provider); no plaintext on the link.
    await dave.startReceiving();
    const groupText = `to the mixed group ${randomBytes(6).toString("hex")}`;
    await sendGroupText(alice, g.id, groupText);
    for (const d of [bob, dave])
      await until(
        () =>
          d
            .history(`group:${g.id}`)
            .some((m) => m.text === groupText && m.fromAccount === "alice@prova"),
        20_000,
      );
    expect(contains([...linkFrames, ...toA.bytes, ...toB.bytes], Buffer.from(groupText))).toBe(
      false,
    );
    for (const d of [carol, dave, frank]) await d.close();
  }, 60_000);

  it("a remote member sends to the group through its own server: every member device on both providers gets it once, no plaintext on the link; a removed member cannot send, a member may leave", async () => {
    // Hosted on prova: gina and hank there, ivy (two devices) and jack on provb.
    const gina = await account(A, "gina");
    const hank = await account(A, "hank");
    const ivy = await account(B, "ivy");
    const ivy2 = await link(B, ivy, "ivy2");
    const jack = await account(B, "jack");
    for (const d of [gina, hank]) await setInteropSettings(d, { enable: ["provb"] });
    for (const d of [ivy, jack])
      await setInteropSettings(d, { enable: ["prova"], groups: "everyone" });
    const g = await createGroup(gina, "hosted on prova", ["hank", "ivy@provb", "jack@provb"]);
    expect(g.members.sort()).toEqual(["gina", "hank", "ivy@provb", "jack@provb"]);
    const all = [gina, hank, ivy, ivy2, jack];
    for (const d of all) await d.startReceiving();
    // Ivy has never heard from the group: her server asks the host for it, translated to provb's
    // names (prova's users as `name@prova`, provb's own users by their local name).
    const seen = await getGroup(ivy, g.id);
    expect(seen.members.sort()).toEqual(["gina@prova", "hank@prova", "ivy", "jack"]);
    const texts = ["first", "second"].map((t) => `${t} from ivy ${randomBytes(6).toString("hex")}`);
    for (const t of texts) await sendGroupText(ivy, g.id, t);
    const receivers: Array<[PairwiseDevice, string]> = [
      [gina, "ivy@provb"],
      [hank, "ivy@provb"],
      [ivy2, "ivy"],
      [jack, "ivy"],
    ];
    for (const [d, from] of receivers)
      await until(
        () =>
          texts.every((t) =>
            d.history(`group:${g.id}`).some((m) => m.text === t && m.fromAccount === from),
          ),
        30_000,
      );
    for (const [d] of receivers)
      for (const t of texts)
        expect(d.history(`group:${g.id}`).filter((m) => m.text === t)).toHaveLength(1);
    // Replies from the host's side still reach everyone, the remote sender included.
    const reply = `gina answers ${randomBytes(6).toString("hex")}`;
    await sendGroupText(gina, g.id, reply);
    for (const d of [hank, ivy, ivy2, jack])
      await until(() => d.history(`group:${g.id}`).some((m) => m.text === reply), 30_000);
    expect(
      [...texts, reply].some((t) =>
        contains([...linkFrames, ...toA.bytes, ...toB.bytes], Buffer.from(t)),
      ),
    ).toBe(false);

    // The host unreachable from provb: ivy's message waits in provb's durable outbox and
    // reaches every member device once the link is back.
    toA.cut();
    const late = `while prova was away ${randomBytes(6).toString("hex")}`;
    await sendGroupText(ivy, g.id, late);
    expect(B.federation!.federation.queued("prova")).toBe(1);
    toA.restore();
    for (const [d] of receivers)
      await until(() => d.history(`group:${g.id}`).some((m) => m.text === late), 30_000);
    await until(() => B.federation!.federation.queued("prova") === 0);
    for (const [d] of receivers)
      expect(d.history(`group:${g.id}`).filter((m) => m.text === late)).toHaveLength(1);

    // Jack is removed on the host: his server still forwards, the host refuses.
    await updateGroup(gina, g.id, { remove: ["jack@provb"] });
    expect(await refusal(sendGroupText(jack, g.id, "am I still in?"))).toBe("NotFound");
    expect(await refusal(getGroup(jack, g.id))).toBe("NotFound");
    // Ivy leaves through her own server; then she cannot send either, and her devices are
    // not addressed by the next message.
    const left = await updateGroup(ivy, g.id, { remove: ["ivy"] });
    expect(left.members.sort()).toEqual(["gina@prova", "hank@prova"]);
    expect(await refusal(sendGroupText(ivy, g.id, "after leaving"))).toBe("NotFound");
    expect((await getGroup(gina, g.id)).members.sort()).toEqual(["gina", "hank"]);
    expect(
      [...texts, reply, late].some((t) =>
        contains([...linkFrames, ...toA.bytes, ...toB.bytes], Buffer.from(t)),
      ),
    ).toBe(false);
    for (const d of all) await d.close();
  }, 120_000);

  it("what a partner does not carry is declared and becomes a clear notice, never a silent drop", async () => {
    const provb = (await getInteropSettings(alice)).partnerInfo.find((p) => p.name === "provb");
    expect(provb?.state).toBe("connected");
    expect(provb?.capabilities).toMatchObject({ text: true, photos: true, reactions: false });
    const target = bob.history("alice@prova").at(-1)?.id ?? "";
    const reaction = await sendThirdParty(alice, "bob@provb", {
      kind: "reaction",
      emoji: "👍",
      target,
    });
    expect(reaction.degraded).toBe(true);
    const notice = "[a reaction was sent here, but provb does not support it]";
    await until(() => bob.history("alice@prova").some((m) => m.text === notice), 20_000);
    const text = await sendThirdParty(alice, "bob@provb", { kind: "text", text: "plain text" });
    expect(text.degraded).toBe(false);
    await until(() => bob.history("alice@prova").some((m) => m.text === "plain text"), 20_000);
  }, 60_000);

  it("a partner that was down gets everything once it returns, across a restart of the sender's server; a user who opts out is unreachable", async () => {
    toB.cut();
    const texts = ["one", "two", "three"].map((t) => `${t} ${randomBytes(4).toString("hex")}`);
    for (const t of texts) await alice.sendText("bob@provb", t);
    expect(A.federation!.federation.queued("provb")).toBe(3);
    expect(bob.history("alice@prova").some((m) => m.text === texts[0])).toBe(false);
    // prova restarts (same data dir, same ports) while provb is still unreachable: the outbox
    // is durable, so the three accepted messages are still owed to provb.
    const ports = { port: A.port, federationPort: A.federation!.port };
    await A.close();
    // The same ports again: retried a few times in case the OS has not released them yet.
    for (let attempt = 1; ; attempt++) {
      try {
        A = await start(dirA, "prova", { name: "provb", proxy: toB, key: B.publicKey }, ports);
        break;
      } catch (err) {
        if (attempt >= 10) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    expect(A.federation!.federation.queued("provb")).toBe(3);
    toB.restore();
    await until(
      () => texts.every((t) => bob.history("alice@prova").some((m) => m.text === t)),
      30_000,
    );
    const order = bob
      .history("alice@prova")
      .filter((m) => texts.includes(m.text ?? ""))
      .map((m) => m.text);
    expect(order).toEqual(texts);
    await until(() => A.federation!.federation.queued("provb") === 0);

    await setInteropSettings(bob, { disable: ["prova"] });
    // Alice's device reconnects to the restarted server on its own (bounded wait).
    let code = await refusal(alice.refreshContact("bob@provb"));
    for (let i = 0; i < 100 && code === "Disconnected"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      code = await refusal(alice.refreshContact("bob@provb"));
    }
    expect(code).toBe("NotFound");
    expect(await refusal(alice.sendText("bob@provb", "still there?"))).toBe("NotFound");
    await alice.close();
    await bob.close();
  }, 90_000);
});
