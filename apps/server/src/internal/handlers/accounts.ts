import {
  CoreError,
  verifyDeviceIdentityBytes,
  verifyDeviceListBytes,
  verifyIdentitySignature,
} from "@pairwise/core";
import type {
  Register,
  RegisterCompanion,
  UploadKeys,
  PublishDeviceList,
  RemoveDevice,
  ProvisionCompanion,
} from "@pairwise/core/relay-proto";
import type { Caller, HandlerResult, RelayContext } from "../context.ts";
import { ServerError } from "../errors.ts";
import type { DeviceRecord, NewDevice, PreKeyUpload } from "../store/server-store.ts";
import {
  check,
  checkAccountId,
  checkDeviceKeys,
  checkPreKeyUpload,
  checkText,
} from "../validate.ts";

/** Reservations of companion slots live this long (a linking must finish within it). */
const RESERVATION_TTL_MS = 5 * 60_000;

/** Maps a core verification failure to the server's error without leaking details. */
function refuse(err: unknown, what: string): never {
  if (CoreError.is(err, "StaleDeviceList"))
    throw new ServerError("StaleDeviceList", `${what} is older than the current one`);
  if (CoreError.is(err)) throw new ServerError("InvalidRequest", `${what} does not verify`);
  throw err;
}

/** Every prekey in the upload must be signed by the device's identity key. */
function checkPreKeySignatures(identityKey: Uint8Array, upload: PreKeyUpload): void {
  const signed = [upload.signedPreKey, upload.lastResortKyberPreKey, ...upload.kyberPreKeys];
  for (const k of signed) {
    if (k)
      check(
        verifyIdentitySignature(identityKey, k.publicKey, k.signature),
        "prekey signature does not verify",
      );
  }
}

export function requireDevice(caller: Caller): DeviceRecord {
  if (!caller.device)
    throw new ServerError("Unauthorized", "this connection is not a registered device");
  return caller.device;
}

export function requirePrimary(caller: Caller): DeviceRecord {
  const device = requireDevice(caller);
  if (device.deviceId !== 1)
    throw new ServerError("Unauthorized", "only the primary device may do this");
  return device;
}

/** Register: a new account whose primary is the connecting device. */
export async function register(
  ctx: RelayContext,
  caller: Caller,
  req: Register,
): Promise<HandlerResult> {
  check(caller.device === undefined, "this connection is already registered");
  const accountId = checkAccountId(req.accountId);
  check(req.accountKey.length === 33, "account key has the wrong length");
  const device: NewDevice = checkDeviceKeys(req.device, {
    deviceId: 1,
    keyIndex: 0,
    noiseKey: caller.noiseKey,
  });
  check(
    req.signedDeviceList.length > 0 && req.signedDeviceList.length <= 4096,
    "signed device list has the wrong length",
  );
  const now = ctx.now();
  let listTimestamp: number;
  try {
    verifyDeviceIdentityBytes({
      signedDeviceIdentity: device.signedDeviceIdentity,
      accountKey: req.accountKey,
      identityKey: device.identityKey,
      accountId,
      deviceId: 1,
    });
    const list = verifyDeviceListBytes({
      signedDeviceList: req.signedDeviceList,
      accountKey: req.accountKey,
      accountId,
      now,
    });
    check(
      list.validKeyIndexes.length === 1 && list.validKeyIndexes[0] === 0,
      "a new account lists only its primary",
    );
    listTimestamp = list.timestamp;
  } catch (err) {
    refuse(err, "registration");
  }
  checkPreKeySignatures(device.identityKey, device.keys);
  if (ctx.config.registration === "invite") {
    const ok =
      req.inviteToken.length > 0 &&
      req.inviteToken.length <= 128 &&
      (await ctx.store.useInvite(req.inviteToken, now));
    if (!ok) throw new ServerError("Unauthorized", "a valid invite token is required");
  }
  await ctx.store.createAccount({
    accountId,
    accountKey: req.accountKey,
    signedDeviceList: req.signedDeviceList,
    deviceListTimestamp: listTimestamp,
    primary: device,
    now,
  });
  const stored = await ctx.store.getDevice(accountId, 1);
  if (!stored) throw new ServerError("Internal", "registered device not found");
  caller.authenticate(stored);
  return { case: "register", value: { accountId, deviceId: 1 } };
}

/** The primary reserves a device id and key index for a companion it is about to link. */
export async function allocateCompanion(ctx: RelayContext, caller: Caller): Promise<HandlerResult> {
  const primary = requirePrimary(caller);
  const slot = await ctx.store.reserveCompanion({
    accountId: primary.accountId,
    maxCompanions: ctx.config.maxCompanions,
    now: ctx.now(),
    ttlMs: RESERVATION_TTL_MS,
  });
  return { case: "companionSlot", value: slot };
}

/**
 * The primary publishes the list that names the new companion and hands the sealed envelope to
 * the companion waiting behind `ref`.
 */
export async function provisionCompanion(
  ctx: RelayContext,
  caller: Caller,
  req: ProvisionCompanion,
): Promise<HandlerResult> {
  const primary = requirePrimary(caller);
  check(
    req.envelope.length > 0 && req.envelope.length <= 64 * 1024,
    "envelope has the wrong length",
  );
  check(req.ref.length >= 16 && req.ref.length <= 64, "ref is not valid");
  const reservation = await ctx.store.getReservation(primary.accountId, req.deviceId, ctx.now());
  if (!reservation)
    throw new ServerError("NotFound", "no reserved companion slot with that device id");
  await publishList(ctx, primary, req.signedDeviceList, (valid) =>
    check(valid.includes(reservation.keyIndex), "the new device list does not name the companion"),
  );
  if (
    !ctx.provisioning.deliver(req.ref, req.envelope) &&
    !(await ctx.provisionRemote?.(req.ref, req.envelope))
  )
    throw new ServerError("Expired", "the link code expired or is unknown");
  return { case: "empty", value: {} };
}

/** The companion registers on its own connection with the identity the primary signed. */
export async function registerCompanion(
  ctx: RelayContext,
  caller: Caller,
  req: RegisterCompanion,
): Promise<HandlerResult> {
  check(caller.device === undefined, "this connection is already registered");
  const accountId = checkAccountId(req.accountId);
  check(req.deviceId >= 2 && req.deviceId <= 127, "companion device id out of range");
  const now = ctx.now();
  const [account, reservation] = await Promise.all([
    ctx.store.getAccount(accountId),
    ctx.store.getReservation(accountId, req.deviceId, now),
  ]);
  if (!account || !reservation)
    throw new ServerError("NotFound", "no reserved companion slot with that device id");
  const device = checkDeviceKeys(req.device, {
    deviceId: req.deviceId,
    keyIndex: reservation.keyIndex,
    noiseKey: caller.noiseKey,
  });
  try {
    const identity = verifyDeviceIdentityBytes({
      signedDeviceIdentity: device.signedDeviceIdentity,
      accountKey: account.accountKey,
      identityKey: device.identityKey,
      accountId,
      deviceId: req.deviceId,
    });
    check(identity.keyIndex === reservation.keyIndex, "device identity has another key index");
    const list = verifyDeviceListBytes({
      signedDeviceList: account.signedDeviceList,
      accountKey: account.accountKey,
      accountId,
      now,
    });
    check(
      list.validKeyIndexes.includes(identity.keyIndex),
      "the account's device list does not name this device",
    );
  } catch (err) {
    refuse(err, "companion identity");
  }
  checkPreKeySignatures(device.identityKey, device.keys);
  await ctx.store.addCompanion({ accountId, device, now });
  const stored = await ctx.store.getDevice(accountId, req.deviceId);
  if (!stored) throw new ServerError("Internal", "registered device not found");
  caller.authenticate(stored);
  return { case: "register", value: { accountId, deviceId: req.deviceId } };
}

/** Verifies a new signed list of the caller's account and stores it if newer (primary only). */
async function publishList(
  ctx: RelayContext,
  primary: DeviceRecord,
  signedDeviceList: Uint8Array,
  extra?: (valid: readonly number[]) => void,
): Promise<number> {
  check(
    signedDeviceList.length > 0 && signedDeviceList.length <= 4096,
    "signed device list has the wrong length",
  );
  const account = await ctx.store.getAccount(primary.accountId);
  if (!account) throw new ServerError("NotFound", "account not found");
  let timestamp: number;
  try {
    const list = verifyDeviceListBytes({
      signedDeviceList,
      accountKey: account.accountKey,
      accountId: account.accountId,
      lastSeenTimestamp: account.deviceListTimestamp,
      now: ctx.now(),
    });
    if (list.timestamp <= account.deviceListTimestamp)
      throw new ServerError("StaleDeviceList", "device list is not newer than the current one");
    extra?.(list.validKeyIndexes);
    timestamp = list.timestamp;
  } catch (err) {
    if (ServerError.is(err)) throw err;
    refuse(err, "device list");
  }
  await ctx.store.updateDeviceList({ accountId: account.accountId, signedDeviceList, timestamp });
  return timestamp;
}

/** PublishDeviceList (primary only): verified against the stored account key, newer only. */
export async function publishDeviceList(
  ctx: RelayContext,
  caller: Caller,
  req: PublishDeviceList,
): Promise<HandlerResult> {
  await publishList(ctx, requirePrimary(caller), req.signedDeviceList);
  return { case: "empty", value: {} };
}

/** RemoveDevice (primary only): new list without it, then its keys and queue go, and it is disconnected. */
export async function removeDevice(
  ctx: RelayContext,
  caller: Caller,
  req: RemoveDevice,
): Promise<HandlerResult> {
  const primary = requirePrimary(caller);
  check(req.deviceId >= 2 && req.deviceId <= 127, "only companions can be removed");
  const target = await ctx.store.getDevice(primary.accountId, req.deviceId);
  if (!target) throw new ServerError("NotFound", "no such device");
  const account = await ctx.store.getAccount(primary.accountId);
  if (!account) throw new ServerError("NotFound", "account not found");
  let timestamp: number;
  try {
    const list = verifyDeviceListBytes({
      signedDeviceList: req.signedDeviceList,
      accountKey: account.accountKey,
      accountId: account.accountId,
      lastSeenTimestamp: account.deviceListTimestamp,
      now: ctx.now(),
    });
    check(
      list.timestamp > account.deviceListTimestamp,
      "device list is not newer than the current one",
    );
    check(
      !list.validKeyIndexes.includes(target.keyIndex),
      "the new device list still names the device",
    );
    timestamp = list.timestamp;
  } catch (err) {
    if (ServerError.is(err)) throw err;
    refuse(err, "device list");
  }
  await ctx.store.removeDevice({
    accountId: primary.accountId,
    deviceId: req.deviceId,
    signedDeviceList: req.signedDeviceList,
    timestamp,
  });
  ctx.disconnect(primary.accountId, req.deviceId);
  return { case: "empty", value: {} };
}

/** DeleteAccount (primary only): the account and all its devices go; they are disconnected. */
export async function deleteAccount(ctx: RelayContext, caller: Caller): Promise<HandlerResult> {
  const primary = requirePrimary(caller);
  const devices = await ctx.store.listDevices(primary.accountId);
  await ctx.store.deleteAccount(primary.accountId);
  for (const d of devices)
    if (d.deviceId !== primary.deviceId) ctx.disconnect(primary.accountId, d.deviceId);
  return { case: "empty", value: {} };
}

/** UploadKeys: more one-time prekeys and optionally a rotated signed / last-resort prekey. */
export async function uploadKeys(
  ctx: RelayContext,
  caller: Caller,
  req: UploadKeys,
): Promise<HandlerResult> {
  const device = requireDevice(caller);
  const upload = checkPreKeyUpload(req);
  checkPreKeySignatures(device.identityKey, upload);
  await ctx.store.putPreKeys(device.accountId, device.deviceId, upload, ctx.now());
  return { case: "empty", value: {} };
}

/** How many prekeys the server still holds for the caller, so it refills early. */
export async function prekeyCount(ctx: RelayContext, caller: Caller): Promise<HandlerResult> {
  const device = requireDevice(caller);
  const c = await ctx.store.countPreKeys(device.accountId, device.deviceId);
  return {
    case: "prekeyCount",
    value: {
      prekeys: c.preKeys,
      kyberPrekeys: c.kyberPreKeys,
      signedPrekeyUploadedAt: BigInt(c.signedPreKeyUploadedAt),
    },
  };
}

/** The caller's own devices with names, linked-at and last-seen. */
export async function listOwnDevices(ctx: RelayContext, caller: Caller): Promise<HandlerResult> {
  const device = requireDevice(caller);
  const devices = await ctx.store.listDevices(device.accountId);
  const primary = devices.find((d) => d.deviceId === 1);
  return {
    case: "ownDevices",
    value: {
      devices: devices.map((d) => ({
        deviceId: d.deviceId,
        name: checkText(d.name, "name"),
        platform: d.platform,
        linkedAt: BigInt(d.linkedAt),
        lastSeen: BigInt(d.lastSeen),
      })),
      primaryLastSeen: BigInt(primary?.lastSeen ?? 0),
    },
  };
}
