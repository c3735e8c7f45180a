// npm run bench -- core
// Floor: raw libsignal encrypt+decrypt of one message over an established session, with plain
// in-memory stores. Then the same through @pairwise/core with SQLite stores (one transaction per
// operation, per-device locking), PQXDH session setups per second, and a 100-device fan-out.
import { rmSync } from "node:fs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rawFloor } from "./floor.ts";
import { DeviceCrypto, openSqliteStore, type DeviceAddress, type KeyUpload } from "@pairwise/core";
import { collectGarbage, emitResult, line, nowMs, percentile, round } from "./harness.ts";

const ROUNDS = 9;
const PER_ROUND = 300;
const SETUPS = 100;
const FANOUT = 100;
const plaintext = new Uint8Array(160).fill(42);

// ---------------------------------------------------------------- through core, SQLite stores

const dir = mkdtempSync(join(tmpdir(), "pairwise-bench-core-"));
let nextDb = 0;
function device(
  address: DeviceAddress,
  oneTime = 1,
): { crypto: DeviceCrypto; address: DeviceAddress; upload: KeyUpload } {
  const store = openSqliteStore({ path: join(dir, `d${nextDb++}.db`) });
  const crypto = DeviceCrypto.open({ store });
  crypto.setAccount({
    ...address,
    accountPublic: new Uint8Array(33),
    signedDeviceIdentity: new Uint8Array(0),
  });
  return { crypto, address, upload: crypto.createKeyUpload({ oneTime }) };
}
const bundleOf = async (d: { upload: KeyUpload; address: DeviceAddress }) => {
  const { encodePreKeyBundle } = await import("@pairwise/core");
  const u = d.upload;
  return encodePreKeyBundle({
    registrationId: u.registrationId,
    deviceId: d.address.deviceId,
    identityKey: u.identityKey,
    preKey: u.preKeys[0]!,
    signedPreKey: u.signedPreKey!,
    kyberPreKey: u.kyberPreKeys[0]!,
  });
};

async function coreRoundTrip(): Promise<() => Promise<void>> {
  const alice = device({ accountId: "alice", deviceId: 1 });
  const bob = device({ accountId: "bob", deviceId: 1 });
  const [first] = await alice.crypto.encrypt(
    [
      {
        address: bob.address,
        identityPublic: bob.crypto.identityPublic,
        bundle: await bundleOf(bob),
      },
    ],
    plaintext,
  );
  await bob.crypto.decrypt(alice.address, first!, () => undefined);
  const [reply] = await bob.crypto.encrypt(
    [{ address: alice.address, identityPublic: alice.crypto.identityPublic }],
    plaintext,
  );
  await alice.crypto.decrypt(bob.address, reply!, () => undefined);
  const target = [{ address: bob.address, identityPublic: bob.crypto.identityPublic }];
  return async () => {
    const [ct] = await alice.crypto.encrypt(target, plaintext);
    if (ct!.type !== "message") throw new Error("expected an established session");
    await bob.crypto.decrypt(alice.address, ct!, () => undefined);
  };
}

/**
 * Floor and core alternate in rounds and each reports its median round, so drift in the
 * machine's speed during the run (GC, other load) hits both alike.
 */
async function interleaved(
  floor: () => Promise<void>,
  core: () => Promise<void>,
): Promise<{ floorUs: number; coreUs: number }> {
  const time = async (fn: () => Promise<void>) => {
    collectGarbage();
    const start = nowMs();
    for (let i = 0; i < PER_ROUND; i++) await fn();
    return ((nowMs() - start) * 1000) / PER_ROUND;
  };
  for (let w = 0; w < 3; w++) {
    await time(floor);
    await time(core);
  }
  const f: number[] = [];
  const c: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    f.push(await time(floor));
    c.push(await time(core));
  }
  line("floor rounds", f.map((x) => Math.round(x)).join(" "), "µs");
  line("core rounds", c.map((x) => Math.round(x)).join(" "), "µs");
  return { floorUs: percentile(f, 50), coreUs: percentile(c, 50) };
}

async function setupsPerSecond(): Promise<number> {
  const alice = device({ accountId: "alice", deviceId: 1 });
  const peers = [];
  for (let i = 0; i < SETUPS; i++) {
    const p = device({ accountId: `peer${i}`, deviceId: 1 });
    peers.push({ ...p, bundle: await bundleOf(p) });
  }
  const start = nowMs();
  for (const p of peers) {
    const [ct] = await alice.crypto.encrypt(
      [{ address: p.address, identityPublic: p.crypto.identityPublic, bundle: p.bundle }],
      plaintext,
    );
    await p.crypto.decrypt(alice.address, ct!, () => undefined);
  }
  const perSecond = SETUPS / ((nowMs() - start) / 1000);
  for (const d of [alice, ...peers]) d.crypto.state.store.close();
  return perSecond;
}

async function fanout(): Promise<number> {
  const alice = device({ accountId: "alice", deviceId: 1 });
  const peers = [];
  for (let i = 0; i < FANOUT; i++) {
    peers.push(device({ accountId: `member${Math.floor(i / 4)}`, deviceId: (i % 4) + 1 }));
  }
  const targets = [];
  for (const p of peers) {
    targets.push({
      address: p.address,
      identityPublic: p.crypto.identityPublic,
      bundle: await bundleOf(p),
    });
  }
  const first = await alice.crypto.encrypt(targets, plaintext);
  // Every member answers once, so the timed runs use established (ratchet) sessions.
  for (const [i, p] of peers.entries()) {
    await p.crypto.decrypt(alice.address, first[i]!, () => undefined);
    const [reply] = await p.crypto.encrypt(
      [{ address: alice.address, identityPublic: alice.crypto.identityPublic }],
      plaintext,
    );
    await alice.crypto.decrypt(p.address, reply!, () => undefined);
  }
  const established = targets.map(({ address, identityPublic }) => ({ address, identityPublic }));
  const runs = 10;
  await alice.crypto.encrypt(established, plaintext);
  const start = nowMs();
  for (let i = 0; i < runs; i++) await alice.crypto.encrypt(established, plaintext);
  const ms = (nowMs() - start) / runs;
  for (const d of [alice, ...peers]) d.crypto.state.store.close();
  return ms;
}

const { floorUs, coreUs } = await interleaved(await rawFloor(), await coreRoundTrip());
line("floor: raw libsignal encrypt+decrypt", floorUs, "µs/message (median round)");
line("core (SQLite) encrypt+decrypt", coreUs, "µs/message (median round)");
const ratio = coreUs / floorUs;
line("ratio core / floor (target <= 1.5)", ratio);
const setups = await setupsPerSecond();
line("PQXDH session setups (core, SQLite)", setups, "/s");
const fan = await fanout();
line(`fan-out to ${FANOUT} devices (core, SQLite)`, fan, "ms");
rmSync(dir, { recursive: true, force: true });
emitResult({
  bench: "core",
  floor_us: round(floorUs, 1),
  core_us: round(coreUs, 1),
  ratio: round(ratio, 3),
  setups_per_s: round(setups, 1),
  fanout100_ms: round(fan, 2),
});
