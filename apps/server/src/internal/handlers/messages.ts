import { randomBytes } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type Ack,
  type BlobDownload,
  type BlobUpload,
  type DeviceMismatchSchema,
  type FetchDevices,
  type FetchPrekeyBundles,
  type GroupCreate,
  type GroupGet,
  type GroupUpdate,
  type SubmitGroupMessage,
  type SubmitMessage,
} from "@pairwise/core/relay-proto";
import { encodePreKeyBundle } from "@pairwise/core";
import type {
  Caller,
  HandlerOutcome,
  HandlerResult,
  PendingResult,
  RelayContext,
} from "../context.ts";
import { ServerError } from "../errors.ts";
import type { GroupRecord, QueueInsert } from "../store/server-store.ts";
import { LIMITS, check, checkAccountId, checkMessageId, checkText } from "../validate.ts";
import { encodeQueuedEnvelope } from "../wire.ts";
import { requireDevice } from "./accounts.ts";
import { groupNotice, wakeNotified } from "./group-notices.ts";

/**
 * The dedup key of a submission from one of this server's devices: one scope for one-to-one and
 * group submissions alike (one id, one message, whichever way it went).
 */
function localSubmissionKey(
  ctx: RelayContext,
  me: { accountId: string; deviceId: number },
  messageId: string,
): string {
  return ctx.submissionKey(`${me.accountId}|${me.deviceId}`, messageId);
}

/**
 * Enqueues every copy atomically (deduplicated by `dedupKey` when given), counts them and wakes
 * the recipients' delivery; the answer, once committed, tells a duplicate submission from a new
 * one. The enqueue is called before this returns, so a device's submissions keep their order.
 */
function store(
  ctx: RelayContext,
  inserts: QueueInsert[],
  now: number,
  dedupKey: string | undefined,
): PendingResult {
  const enqueued =
    inserts.length > 0
      ? ctx.store.enqueue(inserts, {
          now,
          expiresAt: now + ctx.config.queueTtlMs,
          ...(dedupKey ? { dedupKey } : {}),
        })
      : Promise.resolve({ duplicate: false, seqs: [] as number[] });
  return {
    pending: enqueued.then((result): HandlerResult => {
      if (!result.duplicate) {
        ctx.metrics.submitted.inc(inserts.length);
        // With its seq and bytes: a caught-up device gets it without a queue read.
        inserts.forEach((i, n) => {
          const seq = result.seqs[n];
          ctx.notify(
            i.accountId,
            i.deviceId,
            seq === undefined ? undefined : { seq, envelope: i.envelope },
          );
        });
      }
      return {
        case: "submit",
        value: { serverTimestamp: BigInt(now), duplicate: result.duplicate },
      };
    }),
  };
}

/** FetchDevices: an account's key, signed device list and every device's signed identity. */
export async function fetchDevices(
  ctx: RelayContext,
  caller: Caller,
  req: FetchDevices,
): Promise<HandlerResult> {
  requireDevice(caller);
  const accountId = checkAccountId(req.accountId);
  const account = await ctx.store.getAccount(accountId);
  if (!account) throw new ServerError("NotFound", "no such account");
  const devices = await ctx.store.listDevices(accountId);
  return {
    case: "devices",
    value: {
      accountId,
      accountKey: account.accountKey,
      signedDeviceList: account.signedDeviceList,
      devices: devices.map((d) => ({
        deviceId: d.deviceId,
        registrationId: d.registrationId,
        identityKey: d.identityKey,
        signedDeviceIdentity: d.signedDeviceIdentity,
      })),
    },
  };
}

/** FetchPrekeyBundles: one bundle per requested device; one-time prekeys handed out once; rate-limited. */
export async function fetchPrekeyBundles(
  ctx: RelayContext,
  caller: Caller,
  req: FetchPrekeyBundles,
): Promise<HandlerResult> {
  const me = requireDevice(caller);
  const accountId = checkAccountId(req.accountId);
  const bundles = await takePreKeyBundles(
    ctx,
    accountId,
    req.deviceIds,
    `${me.accountId}|${me.deviceId}`,
  );
  return { case: "prekeyBundles", value: { bundles } };
}

/**
 * Pops one bundle per requested device (every device of the account when none is named),
 * charged to `limiterKey`'s rate limit; tells a device whose one-time prekeys run low. Used for
 * local askers and for a federation partner's.
 */
export async function takePreKeyBundles(
  ctx: RelayContext,
  accountId: string,
  deviceIds: readonly number[],
  limiterKey: string,
): Promise<Uint8Array[]> {
  check(deviceIds.length <= 127, "too many device ids");
  const ids =
    deviceIds.length > 0
      ? [...new Set(deviceIds)]
      : (await ctx.store.listDevices(accountId)).map((d) => d.deviceId);
  if (!ctx.bundleLimiter.take(limiterKey, Math.max(1, ids.length))) {
    throw new ServerError("RateLimited", "too many prekey bundle requests");
  }
  const bundles: Uint8Array[] = [];
  for (const id of ids) {
    const b = await ctx.store.takePreKeyBundle(accountId, id);
    if (!b) continue;
    bundles.push(
      encodePreKeyBundle({
        registrationId: b.registrationId,
        deviceId: b.deviceId,
        identityKey: b.identityKey,
        ...(b.preKey ? { preKey: b.preKey } : {}),
        signedPreKey: b.signedPreKey,
        kyberPreKey: b.kyberPreKey,
      }),
    );
    const counts = await ctx.store.countPreKeys(accountId, id);
    if (counts.preKeys < 20 || counts.kyberPreKeys < 20) ctx.prekeysLow(accountId, id, counts);
  }
  return bundles;
}

/**
 * SubmitMessage: every device copy in one request. For each account addressed, the copies must
 * name exactly that account's devices (minus the sending device); otherwise nothing is stored
 * and the answer lists missing, extra and stale devices. All copies are enqueued in one
 * transaction, deduplicated by (sender, message id).
 */
export async function submitMessage(
  ctx: RelayContext,
  caller: Caller,
  req: SubmitMessage,
): Promise<HandlerOutcome> {
  const me = requireDevice(caller);
  const messageId = checkMessageId(req.messageId);
  check(
    req.copies.length > 0 && req.copies.length <= LIMITS.maxCopiesPerMessage,
    "copy count out of range",
  );
  const byAccount = new Map<string, Map<number, { registrationId: number }>>();
  for (const c of req.copies) {
    checkAccountId(c.accountId);
    check(c.type === 1 || c.type === 2, "copy type is not valid");
    check(
      c.body.length > 0 && c.body.length <= LIMITS.maxCiphertextBytes,
      "copy body size out of range",
    );
    let m = byAccount.get(c.accountId);
    if (!m) byAccount.set(c.accountId, (m = new Map<number, { registrationId: number }>()));
    check(!m.has(c.deviceId), "two copies for one device");
    m.set(c.deviceId, { registrationId: c.registrationId });
  }
  const mismatches: Array<MessageInitShape<typeof DeviceMismatchSchema>> = [];
  for (const [accountId, copies] of byAccount) {
    const devices = (await ctx.store.listDevices(accountId)).filter(
      (d) => !(accountId === me.accountId && d.deviceId === me.deviceId),
    );
    if (devices.length === 0 && accountId !== me.accountId)
      throw new ServerError("NotFound", "no such account");
    // The common case, every device named with its current registration, costs no allocation
    // (a targeted send is checked below: it may name fewer devices, but no unknown ones).
    let matches = !req.targeted && devices.length === copies.size;
    for (const d of devices) {
      const c = copies.get(d.deviceId);
      if (!c || c.registrationId !== d.registrationId) matches = false;
    }
    if (matches) continue;
    const have = new Map(devices.map((d) => [d.deviceId, d]));
    const missing = req.targeted
      ? []
      : devices.filter((d) => !copies.has(d.deviceId)).map((d) => d.deviceId);
    const extra = [...copies.keys()].filter((id) => !have.has(id));
    const stale = [...copies]
      .filter(([id, c]) => have.has(id) && have.get(id)?.registrationId !== c.registrationId)
      .map(([id]) => id);
    if (missing.length || extra.length || stale.length) {
      mismatches.push({ accountId, missing, extra, stale });
    }
  }
  if (mismatches.length > 0) {
    const err = new ServerError("MismatchedDevices", "the device set does not match");
    (err as ServerError & { mismatches?: unknown }).mismatches = mismatches;
    throw err;
  }
  const now = ctx.now();
  const inserts: QueueInsert[] = req.copies.map((c) => ({
    accountId: c.accountId,
    deviceId: c.deviceId,
    envelope: encodeQueuedEnvelope({
      senderAccount: me.accountId,
      senderDevice: me.deviceId,
      type: c.type,
      body: c.body,
      messageId,
      serverTimestamp: now,
    }),
  }));
  // Targeted copies (answers to retry receipts, history for a new companion) reuse a message id
  // on purpose; the recipient deduplicates by message id, so the server does not.
  return store(
    ctx,
    inserts,
    now,
    req.targeted ? undefined : localSubmissionKey(ctx, me, messageId),
  );
}

/** Ack: deletes acknowledged messages from the caller's own queue only. */
export function ack(ctx: RelayContext, caller: Caller, req: Ack): Promise<HandlerOutcome> {
  const me = requireDevice(caller);
  check(req.seqs.length <= 10_000, "too many seqs");
  const seqs = req.seqs.map((s) => Number(s)).filter((s) => Number.isSafeInteger(s) && s > 0);
  return Promise.resolve({
    pending: ctx.store.ack(me.accountId, me.deviceId, seqs).then((n): HandlerResult => {
      ctx.metrics.acknowledged.inc(n);
      return { case: "empty", value: {} };
    }),
  });
}

function groupView(g: GroupRecord): HandlerResult {
  return {
    case: "group",
    value: { groupId: g.groupId, name: g.name, members: g.members, revision: BigInt(g.revision) },
  };
}

async function memberGroup(
  ctx: RelayContext,
  accountId: string,
  groupId: string,
): Promise<GroupRecord> {
  check(/^[A-Za-z0-9_-]{8,64}$/.test(groupId), "group id is not valid");
  const g = await ctx.store.getGroup(groupId);
  if (!g || !g.members.includes(accountId)) throw new ServerError("NotFound", "no such group");
  return g;
}

export async function groupCreate(
  ctx: RelayContext,
  caller: Caller,
  req: GroupCreate,
): Promise<HandlerResult> {
  const me = requireDevice(caller);
  check(req.members.length <= LIMITS.maxGroupMembers, "too many members");
  const members = [...new Set([me.accountId, ...req.members.map(checkAccountId)])];
  for (const m of members)
    if (!(await ctx.store.getAccount(m)))
      throw new ServerError("NotFound", "a member has no account");
  const group: GroupRecord = {
    groupId: randomBytes(12).toString("base64url"),
    name: checkText(req.name, "group name"),
    members,
    revision: 1,
    createdBy: me.accountId,
  };
  wakeNotified(ctx, await ctx.store.createGroup(group, groupNotice(ctx, me.accountId, me)));
  return groupView(group);
}

export async function groupUpdate(
  ctx: RelayContext,
  caller: Caller,
  req: GroupUpdate,
): Promise<HandlerResult> {
  const me = requireDevice(caller);
  await memberGroup(ctx, me.accountId, req.groupId);
  const add = req.add.map(checkAccountId);
  const remove = req.remove.map(checkAccountId);
  for (const m of add)
    if (!(await ctx.store.getAccount(m)))
      throw new ServerError("NotFound", "a member has no account");
  const updated = await ctx.store.updateGroup(
    req.groupId,
    { add, remove },
    groupNotice(ctx, me.accountId, me),
  );
  wakeNotified(ctx, updated);
  return groupView(updated);
}

export async function groupGet(
  ctx: RelayContext,
  caller: Caller,
  req: GroupGet,
): Promise<HandlerResult> {
  const me = requireDevice(caller);
  return groupView(await memberGroup(ctx, me.accountId, req.groupId));
}

/** One Sender Key ciphertext, stored for every member device but the sender's. */
export async function submitGroupMessage(
  ctx: RelayContext,
  caller: Caller,
  req: SubmitGroupMessage,
): Promise<HandlerOutcome> {
  const me = requireDevice(caller);
  const messageId = checkMessageId(req.messageId);
  check(
    req.body.length > 0 && req.body.length <= LIMITS.maxCiphertextBytes,
    "body size out of range",
  );
  const group = await memberGroup(ctx, me.accountId, req.groupId);
  if (req.groupRevision !== 0n && Number(req.groupRevision) !== group.revision) {
    throw new ServerError("Conflict", "the group changed; refresh its members and sender keys");
  }
  const now = ctx.now();
  const envelope = encodeQueuedEnvelope({
    senderAccount: me.accountId,
    senderDevice: me.deviceId,
    type: 3,
    body: req.body,
    groupId: group.groupId,
    messageId,
    serverTimestamp: now,
  });
  const inserts: QueueInsert[] = [];
  for (const member of group.members) {
    for (const d of await ctx.store.listDevices(member)) {
      if (member === me.accountId && d.deviceId === me.deviceId) continue;
      inserts.push({ accountId: member, deviceId: d.deviceId, envelope });
    }
  }
  return store(ctx, inserts, now, localSubmissionKey(ctx, me, messageId));
}

/** BlobUpload: chunks of an encrypted blob; the final chunk carries the SHA-256. */
export async function blobUpload(
  ctx: RelayContext,
  caller: Caller,
  req: BlobUpload,
): Promise<HandlerResult> {
  const me = requireDevice(caller);
  const owner = `${me.accountId}|${me.deviceId}`;
  check(req.data.length <= LIMITS.maxBlobChunkBytes, "chunk too large");
  const now = ctx.now();
  const uploadId =
    req.uploadId === "" ? await ctx.blobs.begin(owner, Number(req.totalSize), now) : req.uploadId;
  await ctx.blobs.append(owner, uploadId, Number(req.offset), req.data, now);
  if (!req.final) return { case: "blobUpload", value: { uploadId, blobId: "" } };
  const done = await ctx.blobs.finish(owner, uploadId, req.sha256);
  await ctx.store.putBlob({ blobId: done.blobId, size: done.size, sha256: req.sha256, owner, now });
  return { case: "blobUpload", value: { uploadId, blobId: done.blobId } };
}

/** BlobDownload: a range of a stored blob (anyone with its id; the content is ciphertext). */
export async function blobDownload(
  ctx: RelayContext,
  caller: Caller,
  req: BlobDownload,
): Promise<HandlerResult> {
  requireDevice(caller);
  check(req.length > 0 && req.length <= LIMITS.maxBlobChunkBytes, "length out of range");
  const { data, total } = await ctx.blobs.read(req.blobId, Number(req.offset), req.length);
  return { case: "blobData", value: { data, totalSize: BigInt(total) } };
}
