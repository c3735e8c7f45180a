import { PublicKey } from "@signalapp/libsignal-client";
import { bytesEqual, toBytes } from "./bytes.ts";
import {
  selectTrustedDevices,
  type CandidateDevice,
  type DeviceRejectionReason,
  type TrustedDevice,
} from "./device-list.ts";
import { CoreError } from "./errors.ts";
import { KEY_SEPARATOR } from "./store/kv-store.ts";
import type { DeviceAddress, DeviceState } from "./store/device-state.ts";

/** What a server claims about an account's devices (to be verified, never trusted as is). */
export interface DeviceClaim {
  accountId: string;
  /**
   * The account id the signatures name, when it differs from `accountId`: a user of another
   * provider is addressed here as `name@provider`, while its own provider signed for `name`.
   */
  signedAccountId?: string;
  /** The account identity public key the server presents (33 bytes). */
  accountPublic: Uint8Array;
  /** SignedDeviceList bytes; `null` when the server has none (then only the primary is usable). */
  signedDeviceList: Uint8Array | null;
  devices: readonly CandidateDevice[];
}

/** Typed trust events for the user interface ("security code changed" and friends). */
export type ContactTrustEvent =
  | { type: "new-contact"; accountId: string }
  | { type: "account-key-changed"; accountId: string; previous: Uint8Array; current: Uint8Array };

/** The devices a sender may encrypt to, and what it refused (fail closed). */
export interface VerifiedDevices {
  accountId: string;
  trusted: readonly TrustedDevice[];
  rejected: ReadonlyArray<{
    deviceId: number;
    reason: DeviceRejectionReason | "account-key-changed";
  }>;
  /** Devices we trusted before that the newest list no longer contains: drop their sessions, rotate group keys. */
  removed: DeviceAddress[];
  /** Timestamp of the device list in force. */
  listTimestamp: number | null;
  event?: ContactTrustEvent;
}

function parseAccountKey(bytes: Uint8Array): PublicKey {
  try {
    if (bytes.length !== 33) throw new Error("length");
    return PublicKey.deserialize(toBytes(bytes));
  } catch (cause) {
    throw new CoreError("InvalidKey", "account key does not decode", { cause });
  }
}

/**
 * Checks what a server says about an account's devices against what this device trusts:
 * trust on first use of the account key (remembered), then ADV — every device must be signed by
 * that account key and listed in the newest signed device list. A *changed* account key is
 * never accepted silently: nothing is trusted, the event says so, and the new key waits for
 * {@link acceptAccountKeyChange}. For our own account pass `own` with our account key.
 * Throws `CoreError` for a bad or rolled-back device list; stored state is then unchanged.
 */
export function verifyDevices(
  state: DeviceState,
  claim: DeviceClaim,
  options: { now: number; own?: { accountPublic: Uint8Array } },
): VerifiedDevices {
  const presented = parseAccountKey(claim.accountPublic);
  const tx = state.begin();
  let event: ContactTrustEvent | undefined;
  let trustedKey: Uint8Array;
  if (options.own) {
    trustedKey = options.own.accountPublic;
  } else {
    const known = tx.getContactKey(claim.accountId);
    if (!known) {
      tx.setContactKey(claim.accountId, {
        accountPublic: claim.accountPublic,
        firstSeen: options.now,
        verified: false,
      });
      event = { type: "new-contact", accountId: claim.accountId };
      trustedKey = claim.accountPublic;
    } else {
      trustedKey = known.accountPublic;
      if (!bytesEqual(known.accountPublic, claim.accountPublic)) {
        tx.setContactKey(claim.accountId, { ...known, pendingKey: claim.accountPublic });
        tx.commit();
        return {
          accountId: claim.accountId,
          trusted: [],
          rejected: claim.devices.map((d) => ({
            deviceId: d.deviceId,
            reason: "account-key-changed" as const,
          })),
          removed: [],
          listTimestamp: null,
          event: {
            type: "account-key-changed",
            accountId: claim.accountId,
            previous: known.accountPublic,
            current: claim.accountPublic,
          },
        };
      }
    }
  }
  if (!bytesEqual(trustedKey, claim.accountPublic)) {
    throw new CoreError("UntrustedDevice", "server presented a different key for our own account");
  }
  const cache = tx.getDeviceList(claim.accountId);
  const selection = selectTrustedDevices({
    accountId: claim.signedAccountId ?? claim.accountId,
    accountPublic: presented,
    signedDeviceList: claim.signedDeviceList,
    devices: claim.devices,
    now: options.now,
    ...(cache ? { lastSeenListTimestamp: cache.timestamp } : {}),
  });
  const listTimestamp = selection.list?.timestamp ?? null;
  const stillTrusted = new Set(selection.trusted.map((d) => d.deviceId));
  const removed = (cache?.devices ?? [])
    .filter((d) => !stillTrusted.has(d.deviceId))
    .map((d) => ({ accountId: claim.accountId, deviceId: d.deviceId }));
  if (
    claim.signedDeviceList &&
    listTimestamp !== null &&
    (!cache || listTimestamp >= cache.timestamp)
  ) {
    tx.setDeviceList(claim.accountId, {
      timestamp: listTimestamp,
      signedList: claim.signedDeviceList,
      devices: selection.trusted.map((d) => ({
        deviceId: d.deviceId,
        keyIndex: d.keyIndex,
        identityPublic: d.identityPublic,
      })),
    });
  }
  for (const r of removed) {
    tx.setSession(r, null);
  }
  tx.commit();
  const result: VerifiedDevices = {
    accountId: claim.accountId,
    trusted: selection.trusted,
    rejected: selection.rejected,
    removed,
    listTimestamp,
  };
  if (event) result.event = event;
  return result;
}

/** The device-list timestamp we last accepted for an account (messages carry the sender's). */
export function knownDeviceListTimestamp(state: DeviceState, accountId: string): number | null {
  return state.getDeviceList(accountId)?.timestamp ?? null;
}

/**
 * Accepts a contact's new account key after the user saw "security code changed": the new key
 * becomes trusted (unverified), and every session, device identity and cached device list of the
 * old account is dropped. Throws `CoreError("InvalidArgument")` when no change is pending.
 */
export function acceptAccountKeyChange(state: DeviceState, accountId: string, now: number): void {
  const known = state.getContactKey(accountId);
  if (!known?.pendingKey)
    throw new CoreError("InvalidArgument", "no account key change is pending");
  const tx = state.begin();
  tx.setContactKey(accountId, { accountPublic: known.pendingKey, firstSeen: now, verified: false });
  tx.setDeviceList(accountId, null);
  const prefix = `${accountId}${KEY_SEPARATOR}`;
  for (const key of state.keys("session", prefix)) tx.put({ table: "session", key, value: null });
  for (const key of state.keys("identity", prefix)) tx.put({ table: "identity", key, value: null });
  tx.commit();
}

/** Marks a contact's account key as verified (the user compared security codes), or not. */
export function setContactVerified(state: DeviceState, accountId: string, verified: boolean): void {
  const known = state.getContactKey(accountId);
  if (!known) throw new CoreError("InvalidArgument", "unknown contact");
  state.setContactKey(accountId, { ...known, verified });
}
