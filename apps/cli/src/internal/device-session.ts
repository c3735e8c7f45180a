import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  ClientError,
  PairwiseDevice,
  type OpenDeviceOptions,
  type ServerInfo,
} from "@pairwise/client";
import { CliError } from "./errors.ts";
import type { CliContext } from "./io.ts";

const CLOSE_TIMEOUT_MS = 2000;

/** The account and device id of a registered or linked device. */
export interface DeviceIdentity {
  accountId: string;
  deviceId: number;
}

function notRegistered(home: string): CliError<"NotRegistered"> {
  return new CliError(
    "NotRegistered",
    `no registered device in ${home}: run 'pairwise register' or 'pairwise link-code' first`,
  );
}

/**
 * Opens the registered or linked device in the home directory (creating nothing if there is
 * none). Throws `CliError("NotRegistered")` or `ClientError("StorageFailure")`.
 */
export function openDevice(ctx: CliContext): PairwiseDevice {
  if (!existsSync(join(ctx.home, "device.db"))) throw notRegistered(ctx.home);
  const device = PairwiseDevice.open(deviceOptions(ctx));
  if (!device.identity) {
    device.store.close();
    throw notRegistered(ctx.home);
  }
  return device;
}

/**
 * How the CLI opens a device: every write committed before it returns (no group commit). A
 * command prints its result right after its writes and may exit at once, so nothing it shows
 * may rest on a commit still to come; one commit per write costs a command nothing noticeable.
 */
function deviceOptions(ctx: CliContext): OpenDeviceOptions {
  return { home: ctx.home, timeoutMs: ctx.timeoutMs, groupCommitMs: 0 };
}

/** The device's identity; throws `CliError("NotRegistered")` if it has none. */
export function identityOf(ctx: CliContext, device: PairwiseDevice): DeviceIdentity {
  const id = device.identity;
  if (!id) throw notRegistered(ctx.home);
  return id;
}

/** Throws unless the device is its account's primary (device 1). */
export function requirePrimary(ctx: CliContext, device: PairwiseDevice, what: string): void {
  if (identityOf(ctx, device).deviceId !== 1)
    throw new CliError("Failed", `only the primary device (device 1) can ${what}`);
}

/**
 * Connects to the relay (the stored server unless `server` is given), giving up after the
 * context's timeout. Throws `CliError("Timeout")` or `CliError("Failed")` naming the URL.
 */
export async function connectDevice(
  ctx: CliContext,
  device: PairwiseDevice,
  server?: ServerInfo,
): Promise<void> {
  const url = server?.url ?? device.server?.url ?? "(none)";
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(
        new CliError(
          "Timeout",
          `cannot reach the server at ${url} within ${String(ctx.timeoutMs / 1000)} s`,
        ),
      );
    }, ctx.timeoutMs);
  });
  try {
    await Promise.race([device.connect(server), deadline]);
  } catch (err) {
    if (ClientError.is(err, "Disconnected") || ClientError.is(err, "Timeout"))
      throw new CliError("Failed", `cannot reach the server at ${url}`, { cause: err });
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Closes the device (connection first, then its database), bounded in time. */
export async function closeDevice(device: PairwiseDevice): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    device.close().catch(() => undefined),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
}

const DB_FILES = ["device.db", "device.db-wal", "device.db-shm"];

/** Removes the device's database files from the home (other files stay). */
export function removeDeviceFiles(home: string): void {
  for (const f of DB_FILES) rmSync(join(home, f), { force: true });
}

/**
 * Runs `fn` with a device that is not registered yet (register, link-code). A home left with
 * keys but no account by an earlier failed attempt is started afresh (it holds nothing of
 * value), and if `fn` fails the files it created are removed again: no half-made device stays
 * behind, and the server URL of a failed attempt is not kept. Throws `CliError("Failed")` if
 * the home already holds a registered device.
 */
export async function withNewDevice<T>(
  ctx: CliContext,
  fn: (device: PairwiseDevice) => Promise<T>,
): Promise<T> {
  const leftOver = existsSync(join(ctx.home, "device.db"));
  let device = PairwiseDevice.open(deviceOptions(ctx));
  const existing = device.identity;
  if (existing) {
    device.store.close();
    throw new CliError(
      "Failed",
      `${ctx.home} already holds device ${String(existing.deviceId)} of account ${existing.accountId}`,
    );
  }
  if (leftOver) {
    device.store.close();
    removeDeviceFiles(ctx.home);
    device = PairwiseDevice.open(deviceOptions(ctx));
  }
  let registered = false;
  try {
    const result = await fn(device);
    registered = device.identity !== undefined;
    return result;
  } finally {
    await closeDevice(device);
    if (!registered) removeDeviceFiles(ctx.home);
  }
}

/** Opens the registered device (see {@link openDevice}), runs `fn` with it, always closes it. */
export async function withDevice<T>(
  ctx: CliContext,
  fn: (device: PairwiseDevice) => Promise<T>,
): Promise<T> {
  const device = openDevice(ctx);
  try {
    return await fn(device);
  } finally {
    await closeDevice(device);
  }
}
