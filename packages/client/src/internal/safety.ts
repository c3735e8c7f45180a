import {
  acceptAccountKeyChange,
  computeSecurityCode,
  setContactVerified,
  type SecurityCode,
} from "@pairwise/core";
import type { PairwiseDevice } from "./device.ts";
import { ClientError } from "./errors.ts";
import { verifiedCache } from "./sender.ts";

/**
 * The security code this device shares with a contact: 60 digits over both accounts' keys.
 * Pairwise shows the code over the account keys (the ADV roots): a companion linked by either
 * party is signed by its account key, so linking does not change the code; only a contact who
 * registers anew (a new account key) does. Throws `ClientError("UntrustedContact")` until the
 * contact's key is known (send to or receive from them first).
 */
export async function securityCode(device: PairwiseDevice, contact: string): Promise<SecurityCode> {
  const me = device.crypto.account;
  if (!me) throw new ClientError("NotRegistered", "register or link this device first");
  await device.refreshContact(contact);
  const theirs = device.crypto.state.getContactKey(contact);
  if (!theirs) throw new ClientError("UntrustedContact", "no key is known for that contact yet");
  return computeSecurityCode({
    local: { stableId: me.accountId, accountKey: me.accountPublic, deviceKeys: [] },
    remote: { stableId: contact, accountKey: theirs.accountPublic, deviceKeys: [] },
  });
}

/**
 * Marks a contact verified when `code` (spaces ignored) matches the security code; throws
 * `ClientError("UntrustedContact")` when it does not (nothing is changed).
 */
export async function verifyContact(
  device: PairwiseDevice,
  contact: string,
  code: string,
): Promise<void> {
  const expected = await securityCode(device, contact);
  if (code.replace(/\s+/g, "") !== expected.digits)
    throw new ClientError("UntrustedContact", "the security code does not match");
  setContactVerified(device.crypto.state, contact, true);
}

/**
 * Accepts a contact's new account key after the "security code changed" event (they registered
 * anew): the new key becomes trusted (not verified) and the old account's sessions are dropped.
 * Throws `ClientError("InvalidArgument")` when no change is pending.
 */
export function acceptNewKey(device: PairwiseDevice, contact: string): void {
  try {
    acceptAccountKeyChange(device.crypto.state, contact, device.now());
  } catch (cause) {
    throw new ClientError("InvalidArgument", "no new key is pending for that contact", { cause });
  }
  verifiedCache(device).delete(contact);
}
