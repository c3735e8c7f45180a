import { create, toBinary } from "@bufbuild/protobuf";
import { GroupNoticeSchema } from "@pairwise/core/relay-proto";
import type { RelayContext } from "../context.ts";
import type { DeviceRef, GroupNoticeOptions } from "../store/server-store.ts";
import { encodeQueuedEnvelope } from "../wire.ts";

/**
 * Envelope type of a group notice: server-originated, so it carries no sender (empty account,
 * device 0), and no device or federation partner can submit one (submissions accept types 1–3
 * only). Documented in relay.proto next to the other types.
 */
export const GROUP_NOTICE_TYPE = 4;

/**
 * Notice options for a membership change made by `by` (an account id, `name@provider` for a
 * member of another provider), queued by the store in the change's transaction. `skip` is the
 * device that made the change: the answer to its request already tells it.
 */
export function groupNotice(ctx: RelayContext, by: string, skip?: DeviceRef): GroupNoticeOptions {
  const now = ctx.now();
  return {
    now,
    expiresAt: now + ctx.config.queueTtlMs,
    ...(skip ? { skip } : {}),
    envelope: (group, change) =>
      encodeQueuedEnvelope({
        senderAccount: "",
        senderDevice: 0,
        type: GROUP_NOTICE_TYPE,
        body: toBinary(
          GroupNoticeSchema,
          create(GroupNoticeSchema, {
            groupId: group.groupId,
            revision: BigInt(group.revision),
            name: group.name,
            members: group.members,
            added: change.added,
            removed: change.removed,
            by,
          }),
        ),
        groupId: group.groupId,
        messageId: "",
        serverTimestamp: now,
      }),
  };
}

/** Wakes delivery to the devices a change queued notices for (after it committed). */
export function wakeNotified(ctx: RelayContext, result: { notified: DeviceRef[] }): void {
  for (const d of result.notified) ctx.notify(d.accountId, d.deviceId);
}
