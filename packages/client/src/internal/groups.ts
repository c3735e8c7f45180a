import {
  GroupCrypto,
  encodeContent,
  newMessageId,
  type DeviceAddress,
  type StoreWrite,
} from "@pairwise/core";
import type { PairwiseDevice } from "./device.ts";
import { ClientError } from "./errors.ts";
import { knownContact, verifiedCache } from "./sender.ts";
import { expectResult } from "./relay-connection.ts";
import { isRemoteAddress } from "./remote-address.ts";

/** A group as this device knows it. */
export interface GroupView {
  id: string;
  name: string;
  members: string[];
  revision: number;
  /**
   * People the server did not add (a cross-provider group admits only users who enabled
   * third-party chats and whose group setting allows it), with the reason; only on the answer
   * to the create or update that tried to add them.
   */
  refused?: Array<{ accountId: string; reason: string }>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const cryptoFor = new WeakMap<PairwiseDevice, GroupCrypto>();

/** The device's Sender Key engine (one per device). */
export function groupCrypto(device: PairwiseDevice): GroupCrypto {
  let g = cryptoFor.get(device);
  if (!g) cryptoFor.set(device, (g = new GroupCrypto(device.crypto)));
  return g;
}

/** The write storing a group record: the view and the devices our sender key went to. */
function groupWrite(view: GroupView, devices: string[]): StoreWrite {
  return {
    table: "app",
    key: `group|${view.id}`,
    value: enc.encode(JSON.stringify({ ...view, devices })),
  };
}

function saveGroup(device: PairwiseDevice, view: GroupView, devices?: string[]): void {
  const previous = loadGroup(device, view.id);
  device.store.apply([groupWrite(view, devices ?? previous?.devices ?? [])]);
}

/**
 * Stores what a group notice says (members, name, revision) together with `extra` writes, in one
 * transaction, unless the cached record is as new already (a redelivered or outdated notice).
 * Returns whether it was stored. What the device shared its sender key with is kept: the next
 * send compares it with the new members' devices and rotates the key after a removal.
 */
export function applyGroupNotice(
  device: PairwiseDevice,
  notice: { groupId: string; name: string; members: string[]; revision: number },
  extra: readonly StoreWrite[] = [],
): boolean {
  const previous = loadGroup(device, notice.groupId);
  if (previous && previous.revision >= notice.revision) return false;
  const view = {
    id: notice.groupId,
    name: notice.name,
    members: notice.members,
    revision: notice.revision,
  };
  device.store.apply([groupWrite(view, previous?.devices ?? []), ...extra]);
  return true;
}

function loadGroup(
  device: PairwiseDevice,
  id: string,
): (GroupView & { devices: string[] }) | undefined {
  const raw = device.store.get("app", `group|${id}`);
  return raw ? (JSON.parse(dec.decode(raw)) as GroupView & { devices: string[] }) : undefined;
}

/** Every group this device knows, by name. */
export function listGroups(device: PairwiseDevice): GroupView[] {
  return device.store.list("app", "group|").map(([, v]) => {
    const g = JSON.parse(dec.decode(v)) as GroupView;
    return { id: g.id, name: g.name, members: g.members, revision: g.revision };
  });
}

function view(info: {
  groupId: string;
  name: string;
  members: string[];
  revision: bigint;
  refused?: Array<{ accountId: string; reason: string }>;
}): GroupView {
  return {
    id: info.groupId,
    name: info.name,
    members: info.members,
    revision: Number(info.revision),
    ...(info.refused?.length
      ? { refused: info.refused.map((r) => ({ accountId: r.accountId, reason: r.reason })) }
      : {}),
  };
}

/** Creates a group on the server with the given members (this account is added). */
export async function createGroup(
  device: PairwiseDevice,
  name: string,
  members: string[],
): Promise<GroupView> {
  const info = expectResult(
    await device.requireConnection().request({ case: "groupCreate", value: { name, members } }),
    "group",
  );
  const g = view(info);
  saveGroup(device, g);
  return g;
}

/**
 * Adds or removes members. A removal rotates this device's sender key, so removed members (and
 * their devices) cannot read what follows; other senders rotate when they notice the change.
 */
export async function updateGroup(
  device: PairwiseDevice,
  id: string,
  change: { add?: string[]; remove?: string[] },
): Promise<GroupView> {
  const info = expectResult(
    await device.requireConnection().request({
      case: "groupUpdate",
      value: { groupId: id, add: change.add ?? [], remove: change.remove ?? [] },
    }),
    "group",
  );
  if ((change.remove ?? []).length > 0) await groupCrypto(device).rotate(id);
  const g = view(info);
  saveGroup(device, g);
  return g;
}

const key = (a: DeviceAddress) => `${a.accountId}|${a.deviceId}`;

/**
 * Sends a text to a group (with `options.messageId`, a caller-chosen id that recipients deduplicate): refreshes membership and every member's verified devices, rotates our
 * sender key if a device we shared it with is gone, hands the key to devices that lack it (over
 * pairwise sessions), then submits one Sender Key ciphertext that the server fans out.
 */
export async function sendGroupText(
  device: PairwiseDevice,
  id: string,
  text: string,
  options: { messageId?: string } = {},
): Promise<string> {
  const me = device.requireIdentity();
  const messageId = options.messageId ?? newMessageId();
  const timestamp = device.nextMessageTimestamp();
  for (let attempt = 1; ; attempt++) {
    // The membership we know is used as is; a submission for an outdated revision is refused
    // by the server ("Conflict"), and then it is read again.
    const cached = attempt === 1 ? loadGroup(device, id) : undefined;
    const g: GroupView = cached
      ? { id: cached.id, name: cached.name, members: cached.members, revision: cached.revision }
      : view(
          expectResult(
            await device.requireConnection().request({ case: "groupGet", value: { groupId: id } }),
            "group",
          ),
        );
    const devices: DeviceAddress[] = [];
    for (const member of g.members) {
      const { trusted } = await knownContact(device, member);
      for (const d of trusted)
        if (!(member === me.accountId && d.deviceId === me.deviceId))
          devices.push({ accountId: member, deviceId: d.deviceId });
    }
    const now = new Set(devices.map(key));
    const before = loadGroup(device, id)?.devices ?? [];
    if (before.some((d) => !now.has(d))) await groupCrypto(device).rotate(id);
    saveGroup(device, g, [...now]);
    const dist = await groupCrypto(device).prepare(id, devices);
    const byAccount = new Map<string, number[]>();
    for (const d of dist.to)
      byAccount.set(d.accountId, [...(byAccount.get(d.accountId) ?? []), d.deviceId]);
    for (const [account, ids] of byAccount) {
      await device.sendContent(
        account,
        {
          messageId: newMessageId(),
          timestamp: BigInt(timestamp),
          body: {
            case: "senderKeyDistribution",
            value: {
              groupId: id,
              distributionId: enc.encode(dist.distributionId),
              message: dist.message,
            },
          },
        },
        { onlyDevices: ids },
      );
    }
    await groupCrypto(device).markDistributed(id, dist.to);
    const padded = encodeContent({
      messageId,
      timestamp: BigInt(timestamp),
      groupId: id,
      body: { case: "text", value: { body: text } },
    });
    const ct = await groupCrypto(device).encrypt(id, padded);
    try {
      await device.requireConnection().request({
        case: "submitGroupMessage",
        value: {
          groupId: id,
          messageId,
          body: ct.body,
          groupRevision: BigInt(g.revision),
          federated: g.members.some(isRemoteAddress),
        },
      });
      break;
    } catch (err) {
      // The membership changed between our read and the submit: read it again and retry.
      if (!ClientError.is(err, "ServerRefused") || err.serverCode !== "Conflict" || attempt >= 4)
        throw err;
      for (const member of g.members) verifiedCache(device).delete(member);
    }
  }
  device.remember({
    id: messageId,
    chat: `group:${id}`,
    fromAccount: me.accountId,
    fromDevice: me.deviceId,
    outgoing: true,
    sync: false,
    text,
    timestamp,
  });
  return messageId;
}
