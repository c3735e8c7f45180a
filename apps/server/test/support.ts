// Test support for the relay: a real server on a loopback port (SQLite in a temp dir) and
// devices that speak the relay protocol through the real transport (Noise XX over WebSocket)
// with real keys from @pairwise/core.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Push } from "@pairwise/core/relay-proto";
import {
  DeviceCrypto,
  acceptDeviceIdentity,
  createAccountKey,
  createEphemeralLinkKeys,
  createLinkSecret,
  createMemoryStore,
  createPrimaryDeviceIdentity,
  nextDeviceListTimestamp,
  openProvisioningEnvelope,
  sealProvisioningMessage,
  signDeviceIdentity,
  signDeviceList,
  type KeyUpload,
} from "@pairwise/core";
import { RelayConnection, expectResult } from "@pairwise/client";
import { generateNoiseKeyPair, noise, type NoiseKeyPair } from "@pairwise/transport";
import { websocketConnector } from "@pairwise/transport/websocket";
import { pino } from "pino";
import { resolveConfig, type ServerConfigInput } from "../src/internal/config.ts";
import { startServer, type RunningServer } from "../src/internal/server.ts";
import type { ServerStore } from "../src/internal/store/server-store.ts";

export function tempDir(prefix = "pairwise-server-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * Starts a relay on 127.0.0.1, port chosen by the OS, data in a fresh temp dir (its clock `now`
 * and its `store`, if given).
 */
export async function startTestServer(
  config: ServerConfigInput = {},
  options: { now?: () => number; store?: ServerStore } = {},
): Promise<RunningServer & { dataDir: string }> {
  const dataDir = config.dataDir ?? tempDir();
  const server = await startServer({
    config: resolveConfig({ dataDir, host: "127.0.0.1", port: 0, logLevel: "silent", ...config }),
    logger: pino({ level: "silent" }),
    ...options,
  });
  return Object.assign(server, { dataDir });
}

/** Opens a Noise-over-WebSocket connection to the server as the holder of `noiseKeys`. */
export async function connect(
  server: { url: string; publicKey: Uint8Array },
  noiseKeys: NoiseKeyPair,
  onPush?: (p: Push) => void,
): Promise<RelayConnection> {
  const transport = await noise(websocketConnector({ url: server.url, ciphertextOnly: true }), {
    staticKeyPair: noiseKeys,
    serverPublicKey: server.publicKey,
  })();
  return new RelayConnection(transport, onPush ? { onPush } : {});
}

export function wireKeys(upload: KeyUpload, name = "test device") {
  return {
    registrationId: upload.registrationId,
    identityKey: upload.identityKey,
    signedPrekey: upload.signedPreKey!,
    lastResortKyberPrekey: upload.lastResortKyberPreKey!,
    prekeys: upload.preKeys,
    kyberPrekeys: upload.kyberPreKeys,
    name,
    platform: "test",
  };
}

/** A device talking to the relay: its crypto state, Noise keys, connection and pushes. */
export class TestDevice {
  readonly pushes: Push[] = [];
  private waiters: Array<() => void> = [];

  constructor(
    readonly accountId: string,
    public deviceId: number,
    readonly crypto: DeviceCrypto,
    readonly noiseKeys: NoiseKeyPair,
    public conn: RelayConnection,
    readonly accountKey?: ReturnType<typeof createAccountKey>,
  ) {}

  onPush = (p: Push) => {
    this.pushes.push(p);
    for (const w of this.waiters.splice(0)) w();
  };

  /** Waits (bounded) until `predicate` holds over the pushes received so far. */
  async waitFor(predicate: (pushes: Push[]) => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.pushes)) {
      if (Date.now() > deadline) throw new Error("timed out waiting for pushes");
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50).unref();
      });
    }
  }

  envelopes() {
    return this.pushes.flatMap((p) => (p.kind.case === "envelope" ? [p.kind.value] : []));
  }

  async reconnect(server: RunningServer): Promise<void> {
    await this.conn.close().catch(() => undefined);
    this.conn = await connect(server, this.noiseKeys, this.onPush);
  }

  /** Registers a new account whose primary this device is. */
  static async register(
    server: RunningServer,
    accountId: string,
    options: { oneTime?: number; inviteToken?: string } = {},
  ): Promise<TestDevice> {
    const accountKey = createAccountKey();
    const crypto = DeviceCrypto.open({ store: createMemoryStore() });
    const noiseKeys = generateNoiseKeyPair();
    const device = new TestDevice(
      accountId,
      1,
      crypto,
      noiseKeys,
      undefined as unknown as RelayConnection,
      accountKey,
    );
    device.conn = await connect(server, noiseKeys, device.onPush);
    const now = Date.now();
    const identity = createPrimaryDeviceIdentity({
      accountPrivate: accountKey.privateKey,
      devicePrivate: crypto.identity.privateKey,
      accountId,
      createdAt: now,
    });
    const list = signDeviceList(accountKey.privateKey, {
      accountId,
      timestamp: now,
      currentKeyIndex: 0,
      validKeyIndexes: [0],
    });
    crypto.setAccount({
      accountId,
      deviceId: 1,
      accountPublic: accountKey.publicKey.serialize(),
      accountPrivate: accountKey.privateKey.serialize(),
      signedDeviceIdentity: identity.signed,
    });
    device.listTimestamp = now;
    device.validKeyIndexes = [0];
    const upload = crypto.createKeyUpload({ oneTime: options.oneTime ?? 10 });
    await device.conn.request({
      case: "register",
      value: {
        accountId,
        accountKey: accountKey.publicKey.serialize(),
        device: { ...wireKeys(upload), signedDeviceIdentity: identity.signed },
        signedDeviceList: list,
        inviteToken: options.inviteToken ?? "",
      },
    });
    return device;
  }

  listTimestamp = 0;
  validKeyIndexes: number[] = [];

  /** Signs the next device list of this (primary's) account with these key indexes. */
  nextList(validKeyIndexes: number[]): Uint8Array {
    if (!this.accountKey) throw new Error("not a primary");
    this.listTimestamp = nextDeviceListTimestamp(this.listTimestamp, Date.now());
    this.validKeyIndexes = validKeyIndexes;
    return signDeviceList(this.accountKey.privateKey, {
      accountId: this.accountId,
      timestamp: this.listTimestamp,
      currentKeyIndex: Math.max(...validKeyIndexes),
      validKeyIndexes,
    });
  }

  /** Links a new companion to this primary through the provisioning channel, as a real companion would. */
  async linkCompanion(server: RunningServer, name = "companion"): Promise<TestDevice> {
    if (!this.accountKey) throw new Error("not a primary");
    const crypto = DeviceCrypto.open({ store: createMemoryStore() });
    const noiseKeys = generateNoiseKeyPair();
    const companion = new TestDevice(
      this.accountId,
      0,
      crypto,
      noiseKeys,
      undefined as unknown as RelayConnection,
    );
    companion.conn = await connect(server, noiseKeys, companion.onPush);
    const ephemeral = createEphemeralLinkKeys();
    const secret = createLinkSecret();
    const { ref } = expectResult(
      await companion.conn.request({ case: "provisioningOpen", value: {} }),
      "provisioningRef",
    );
    // — the primary scans the link code (ref, ephemeral key, identity key, secret) —
    const slot = expectResult(
      await this.conn.request({ case: "allocateCompanion", value: {} }),
      "companionSlot",
    );
    const offered = signDeviceIdentity({
      accountPrivate: this.accountKey.privateKey,
      identity: {
        accountId: this.accountId,
        deviceId: slot.deviceId,
        keyIndex: slot.keyIndex,
        createdAt: Date.now(),
      },
      deviceIdentityPublic: crypto.identity.publicKey,
      linkSecret: secret,
    });
    const list = this.nextList([...this.validKeyIndexes, slot.keyIndex]);
    const envelope = sealProvisioningMessage({
      companionEphemeralPublic: ephemeral.publicKey,
      message: {
        accountId: this.accountId,
        deviceId: slot.deviceId,
        accountIdentityKey: this.accountKey.publicKey.serialize(),
        signedDeviceIdentity: offered,
        signedDeviceList: list,
        primaryName: "primary",
      },
    });
    await this.conn.request({
      case: "provisionCompanion",
      value: { ref, envelope, signedDeviceList: list, deviceId: slot.deviceId },
    });
    // — the companion receives the envelope over its provisioning channel —
    await companion.waitFor((ps) => ps.some((p) => p.kind.case === "provisioning"));
    const delivery = companion.pushes.find((p) => p.kind.case === "provisioning")!;
    const opened = openProvisioningEnvelope({
      ephemeralPrivate: ephemeral.privateKey,
      envelope: (delivery.kind.value as { envelope: Uint8Array }).envelope,
    });
    const accepted = acceptDeviceIdentity({
      signed: opened.signedDeviceIdentity,
      accountPublic: this.accountKey.publicKey,
      devicePrivate: crypto.identity.privateKey,
      linkSecret: secret,
      expected: { accountId: this.accountId, deviceId: slot.deviceId },
    });
    crypto.setAccount({
      accountId: this.accountId,
      deviceId: slot.deviceId,
      accountPublic: opened.accountIdentityKey,
      signedDeviceIdentity: accepted.signed,
    });
    const upload = crypto.createKeyUpload({ oneTime: 10 });
    await companion.conn.request({
      case: "registerCompanion",
      value: {
        accountId: this.accountId,
        deviceId: slot.deviceId,
        device: { ...wireKeys(upload, name), signedDeviceIdentity: accepted.signed },
      },
    });
    companion.deviceId = slot.deviceId;
    return companion;
  }
}
