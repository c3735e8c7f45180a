import { ServerError } from "../errors.ts";
import {
  membershipChange,
  noticeRecipients,
  type DeviceRef,
  type GroupNoticeOptions,
  type GroupRecord,
  type ServerStore,
} from "./server-store.ts";
import type { SqliteContext } from "./sqlite-context.ts";

type GroupMethods = Pick<ServerStore, "createGroup" | "getGroup" | "updateGroup">;

/**
 * Group membership of the SQLite store. Members come back in the order they were added. A
 * membership change and the notices it queues commit in one transaction, so a notice is never
 * lost nor sent for a change that did not happen; SQLite has one writer, so each device's
 * notices take queue seqs in revision order.
 */
export function createSqliteGroups(ctx: SqliteContext): GroupMethods {
  const { db, run } = ctx;
  const q = {
    insert: db.prepare<[string, string, number, string, number, number]>(
      `INSERT INTO chat_groups (group_id, name, revision, created_by, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?)`,
    ),
    group: db.prepare<[string], { name: string; revision: number; created_by: string }>(
      "SELECT name, revision, created_by FROM chat_groups WHERE group_id = ?",
    ),
    members: db.prepare<[string], { member: string }>(
      "SELECT member FROM group_members WHERE group_id = ? ORDER BY rowid",
    ),
    addMember: db.prepare<[string, string]>(
      "INSERT INTO group_members (group_id, member) VALUES (?, ?) ON CONFLICT DO NOTHING",
    ),
    removeMember: db.prepare<[string, string]>(
      "DELETE FROM group_members WHERE group_id = ? AND member = ?",
    ),
    bump: db.prepare<[number, string]>(
      "UPDATE chat_groups SET revision = revision + 1, updated_at = ? WHERE group_id = ?",
    ),
    devices: db.prepare<[string], { dev: number; device_id: number }>(
      "SELECT dev, device_id FROM devices WHERE account_id = ? ORDER BY device_id",
    ),
    enqueue: db.prepare<[number, Uint8Array, number, number]>(
      "INSERT INTO queue (dev, envelope, enqueued_at, expires_at) VALUES (?, ?, ?, ?)",
    ),
  };

  const read = (groupId: string): GroupRecord | undefined => {
    const g = q.group.get(groupId);
    if (!g) return undefined;
    const members = q.members.all(groupId).map((m) => m.member);
    return { groupId, name: g.name, members, revision: g.revision, createdBy: g.created_by };
  };

  // Runs inside the change's transaction.
  const queueNotices = (
    before: readonly string[],
    group: GroupRecord,
    notice: GroupNoticeOptions | undefined,
  ): DeviceRef[] => {
    if (!notice) return [];
    const envelope = notice.envelope(group, membershipChange(before, group.members));
    const notified: DeviceRef[] = [];
    for (const accountId of noticeRecipients(before, group.members))
      for (const d of q.devices.all(accountId)) {
        if (notice.skip?.accountId === accountId && notice.skip.deviceId === d.device_id) continue;
        q.enqueue.run(d.dev, envelope, notice.now, notice.expiresAt);
        notified.push({ accountId, deviceId: d.device_id });
      }
    return notified;
  };

  const create = db.transaction((group: GroupRecord, notice: GroupNoticeOptions | undefined) => {
    const now = ctx.now();
    q.insert.run(group.groupId, group.name, group.revision, group.createdBy, now, now);
    for (const m of group.members) q.addMember.run(group.groupId, m);
    const stored = read(group.groupId);
    if (!stored) throw new ServerError("Internal", "group vanished during creation");
    return { notified: queueNotices([], stored, notice) };
  });

  const update = db.transaction(
    (
      groupId: string,
      change: { add: string[]; remove: string[] },
      notice: GroupNoticeOptions | undefined,
    ) => {
      const before = q.members.all(groupId).map((m) => m.member);
      if (q.bump.run(ctx.now(), groupId).changes === 0) {
        throw new ServerError("NotFound", "group not found");
      }
      for (const m of change.remove) q.removeMember.run(groupId, m);
      for (const m of change.add) q.addMember.run(groupId, m);
      const group = read(groupId);
      if (!group) throw new ServerError("Internal", "group vanished during update");
      return { ...group, notified: queueNotices(before, group, notice) };
    },
  );

  return {
    createGroup: (group, notice) => run(() => create(group, notice)),
    getGroup: (groupId) => run(() => read(groupId)),
    updateGroup: (groupId, change, notice) => run(() => update(groupId, change, notice)),
  };
}
