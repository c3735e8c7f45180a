// Test support: devices on real stores, and a small in-process prekey directory standing in for
// the relay's (core does no network I/O; the real server arrives with issue #4).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { DeviceCrypto, type KeyUpload } from "../src/internal/device-crypto.ts";
import { CoreError, type CoreErrorCode } from "../src/internal/errors.ts";
import { encodePreKeyBundle } from "../src/internal/prekey-bundle.ts";
import type { DeviceAddress } from "../src/internal/store/device-state.ts";
import type { KeyValueStore } from "../src/internal/store/kv-store.ts";
import { createMemoryStore } from "../src/internal/store/memory-store.ts";
import { openSqliteStore } from "../src/internal/store/sqlite-store.ts";

/** Asserts that `fn` throws a `CoreError` with `code` (and fails the test if it returns). */
export function expectCode(fn: () => unknown, code: CoreErrorCode): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(CoreError.is(thrown) ? thrown.code : thrown).toBe(code);
}

export function tempDir(prefix = "pairwise-core-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TestDevice {
  address: DeviceAddress;
  crypto: DeviceCrypto;
  store: KeyValueStore;
  path?: string;
}

/** Holds what devices uploaded and hands out bundles, one-time prekeys once each. */
export class KeyDirectory {
  private readonly uploads = new Map<string, KeyUpload & { deviceId: number }>();

  publish(address: DeviceAddress, upload: KeyUpload): void {
    const key = `${address.accountId}.${address.deviceId}`;
    const prev = this.uploads.get(key);
    this.uploads.set(key, {
      ...upload,
      deviceId: address.deviceId,
      signedPreKey: upload.signedPreKey ?? prev?.signedPreKey,
      lastResortKyberPreKey: upload.lastResortKyberPreKey ?? prev?.lastResortKyberPreKey,
      preKeys: [...(prev?.preKeys ?? []), ...upload.preKeys],
      kyberPreKeys: [...(prev?.kyberPreKeys ?? []), ...upload.kyberPreKeys],
    } as KeyUpload & { deviceId: number });
  }

  bundle(address: DeviceAddress): Uint8Array {
    const u = this.uploads.get(`${address.accountId}.${address.deviceId}`);
    if (!u?.signedPreKey || !u.lastResortKyberPreKey) throw new Error("no keys published");
    const preKey = u.preKeys.shift();
    const kyber = u.kyberPreKeys.shift() ?? u.lastResortKyberPreKey;
    return encodePreKeyBundle({
      registrationId: u.registrationId,
      deviceId: u.deviceId,
      identityKey: u.identityKey,
      ...(preKey ? { preKey } : {}),
      signedPreKey: u.signedPreKey,
      kyberPreKey: kyber,
    });
  }
}

/** A device with an account address, keys published to `directory`. */
export function createTestDevice(
  address: DeviceAddress,
  directory: KeyDirectory,
  options: { sqlitePath?: string; oneTime?: number } = {},
): TestDevice {
  const store = options.sqlitePath
    ? openSqliteStore({ path: options.sqlitePath })
    : createMemoryStore();
  const crypto = DeviceCrypto.open({ store });
  crypto.setAccount({
    accountId: address.accountId,
    deviceId: address.deviceId,
    accountPublic: new Uint8Array(33),
    signedDeviceIdentity: new Uint8Array(0),
  });
  directory.publish(address, crypto.createKeyUpload({ oneTime: options.oneTime ?? 5 }));
  const device: TestDevice = { address, crypto, store };
  if (options.sqlitePath) device.path = options.sqlitePath;
  return device;
}

/** Reopens a SQLite-backed test device from its file, as after a restart. */
export function reopen(device: TestDevice): TestDevice {
  if (!device.path) throw new Error("not a SQLite device");
  device.store.close();
  const store = openSqliteStore({ path: device.path });
  return { ...device, store, crypto: DeviceCrypto.open({ store }) };
}

export const text = (s: string) => new TextEncoder().encode(s);
export const untext = (b: Uint8Array) => new TextDecoder().decode(b);
