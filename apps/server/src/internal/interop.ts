import { randomBytes } from "node:crypto";
import type {
  BlobDownload,
  FedDeliver,
  FetchDevices,
  FetchPrekeyBundles,
  GroupCreate,
  GroupGet,
  GroupUpdate,
  InteropSet,
  SubmitGroupMessage,
  SubmitMessage,
} from "@pairwise/core/relay-proto";
import {
  InteropError,
  capabilityList,
  type Federation,
  type FederationHandler,
  type FederationStore,
} from "@pairwise/interop-adapters/federation";
import {
  isPending,
  type Caller,
  type HandlerOutcome,
  type HandlerResult,
  type RelayContext,
} from "./context.ts";
import { ServerError } from "./errors.ts";
import { requireDevice } from "./handlers/accounts.ts";
import { groupNotice, wakeNotified } from "./handlers/group-notices.ts";
import * as messages from "./handlers/messages.ts";
import type { GroupRecord, QueueInsert } from "./store/server-store.ts";
import {
  LIMITS,
  check,
  checkAccountId,
  checkMessageId,
  checkText,
  isRemoteId,
} from "./validate.ts";
import { encodeQueuedEnvelope } from "./wire.ts";

const REMOTE = /^([a-z0-9._-]{1,64})@([a-z0-9][a-z0-9.-]{0,62})$/;
const POLICIES = new Set(["everyone", "contacts", "nobody"]);
/** How long InteropGet waits for a partner never reached before to answer its handshake. */
const PROBE_MS = 2000;

function parseRemote(id: string): { name: string; provider: string } {
  const m = REMOTE.exec(id);
  if (!m?.[1] || !m[2]) throw new ServerError("InvalidRequest", "remote address is not valid");
  return { name: m[1], provider: m[2] };
}

/** Federation as the relay uses it: the link, the privacy store, this provider's name. */
export interface InteropService {
  provider: string;
  federation: Federation;
  store: FederationStore;
}

const services = new WeakMap<RelayContext, InteropService>();

/** Attaches federation to a relay's context (server start-up). */
export function attachInterop(ctx: RelayContext, service: InteropService): void {
  services.set(ctx, service);
}

function service(ctx: RelayContext): InteropService {
  const s = services.get(ctx);
  if (!s) throw new ServerError("NotFound", "this server does not federate with other providers");
  return s;
}

/** Maps a link failure to the relay's error for the device (fixed texts, no user data). */
function linkError(err: unknown): ServerError {
  if (ServerError.is(err)) return err;
  if (InteropError.is(err, "PartnerRefused")) {
    const code = err.remoteCode;
    if (code === "NotFound") return new ServerError("NotFound", "no such account");
    if (code === "MismatchedDevices")
      return new ServerError("MismatchedDevices", "the device set does not match");
    if (code === "RateLimited") return new ServerError("RateLimited", "the other provider is busy");
    if (code === "Conflict")
      return new ServerError("Conflict", "the group changed; refresh its members and sender keys");
    if (code === "Unauthorized")
      return new ServerError("Unauthorized", "that user does not accept chats from this provider");
    return new ServerError("Unavailable", "the other provider refused the request");
  }
  if (InteropError.is(err, "WeakProtocol") || InteropError.is(err, "NotAllowed"))
    return new ServerError("Unavailable", `federation refused: ${err.message}`);
  return new ServerError("Unavailable", "the other provider is unreachable");
}

function requireEnabled(s: InteropService, accountId: string, provider: string): void {
  if (!s.federation.isPartner(provider))
    throw new ServerError("NotFound", "this server does not federate with that provider");
  if (!s.store.getPrivacy(accountId).providers.includes(provider))
    throw new ServerError(
      "Unauthorized",
      `third-party chats with ${provider} are off for this account: enable them first`,
    );
}

async function settingsView(s: InteropService, accountId: string): Promise<HandlerResult> {
  const p = s.store.getPrivacy(accountId);
  const partnerInfo = [];
  for (const name of s.federation.partnerNames) {
    // What a partner carries is learnt in its handshake: open the link if it never was.
    // (Waiting at most PROBE_MS: a partner that does not answer shows as not known yet.)
    if (!s.federation.partnerCapabilities(name)) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        s.federation.connect(name).catch(() => undefined),
        new Promise<void>((r) => (timer = setTimeout(r, PROBE_MS))),
      ]);
      clearTimeout(timer);
    }
    const caps = s.federation.partnerCapabilities(name);
    partnerInfo.push({
      name,
      state: s.federation.partnerState(name) ?? "stopped",
      capabilitiesKnown: caps !== undefined,
      capabilities: caps ? capabilityList(caps) : [],
    });
  }
  return {
    case: "interopSettings",
    value: {
      provider: s.provider,
      partners: s.federation.partnerNames,
      providers: p.providers,
      groups: p.groups,
      partnerInfo,
    },
  };
}

/** InteropGet: the caller's third-party chat settings. */
export function interopGet(ctx: RelayContext, caller: Caller): Promise<HandlerResult> {
  const me = requireDevice(caller);
  return settingsView(service(ctx), me.accountId);
}

/** InteropSet: enables/disables providers (partners only) and sets the group policy. */
export function interopSet(
  ctx: RelayContext,
  caller: Caller,
  req: InteropSet,
): Promise<HandlerResult> {
  const me = requireDevice(caller);
  const s = service(ctx);
  check(req.groups === "" || POLICIES.has(req.groups), "group policy is not valid");
  for (const p of req.enable)
    if (!s.federation.isPartner(p))
      throw new ServerError("NotFound", "this server does not federate with that provider");
  const current = s.store.getPrivacy(me.accountId);
  const providers = new Set(current.providers);
  for (const p of req.enable) providers.add(p);
  for (const p of req.disable) providers.delete(p);
  s.store.setPrivacy(me.accountId, {
    providers: [...providers],
    groups: req.groups === "" ? current.groups : (req.groups as typeof current.groups),
  });
  return settingsView(s, me.accountId);
}

/** FetchDevices for `name@provider`: asked of the partner, which checks the user opted in. */
type PartnerRequest = Parameters<InteropService["federation"]["request"]>[1];
type PartnerAnswer = Awaited<ReturnType<InteropService["federation"]["request"]>>;
type PartnerAnswered = Exclude<PartnerAnswer, { case: undefined }>;
type PartnerValue = { [A in PartnerAnswered as A["case"]]: A["value"] };

/**
 * Asks partner `provider` over the federation link and expects an answer of case `expected`;
 * any failure (the link, a refusal, another answer) becomes the relay's error for the device.
 */
async function ask<C extends PartnerAnswered["case"]>(
  s: InteropService,
  provider: string,
  request: PartnerRequest,
  expected: C,
): Promise<PartnerValue[C]> {
  let r: PartnerAnswer;
  try {
    r = await s.federation.request(provider, request);
  } catch (err) {
    throw linkError(err);
  }
  if (r.case !== expected) throw new ServerError("Unavailable", "unexpected partner answer");
  return r.value as PartnerValue[C];
}

export async function fetchRemoteDevices(
  ctx: RelayContext,
  caller: Caller,
  req: FetchDevices,
): Promise<HandlerResult> {
  const me = requireDevice(caller);
  const s = service(ctx);
  const { name, provider } = parseRemote(req.accountId);
  requireEnabled(s, me.accountId, provider);
  const devices = await ask(
    s,
    provider,
    { case: "fetchDevices", value: { accountId: name, asker: me.accountId } },
    "devices",
  );
  return { case: "devices", value: { ...devices, accountId: req.accountId } };
}

/** FetchPrekeyBundles for `name@provider`, through the partner. */
export async function fetchRemoteBundles(
  ctx: RelayContext,
  caller: Caller,
  req: FetchPrekeyBundles,
): Promise<HandlerResult> {
  const me = requireDevice(caller);
  const s = service(ctx);
  const { name, provider } = parseRemote(req.accountId);
  requireEnabled(s, me.accountId, provider);
  check(req.deviceIds.length <= 127, "too many device ids");
  const { bundles } = await ask(
    s,
    provider,
    {
      case: "fetchPrekeyBundles",
      value: { accountId: name, deviceIds: req.deviceIds, asker: me.accountId },
    },
    "prekeyBundles",
  );
  return { case: "prekeyBundles", value: { bundles } };
}

/**
 * A submission naming users of other providers: their copies go to each partner (now, or
 * durably queued while it is down), the copies for the sender's own devices are queued here
 * as any submission's. A device mismatch the partner reports comes back as the relay's own.
 */
export async function submitFederated(
  ctx: RelayContext,
  caller: Caller,
  req: SubmitMessage,
): Promise<HandlerOutcome> {
  const me = requireDevice(caller);
  const s = service(ctx);
  const messageId = checkMessageId(req.messageId);
  check(
    req.copies.length > 0 && req.copies.length <= LIMITS.maxCopiesPerMessage,
    "copy count out of range",
  );
  const remote = new Map<string, SubmitMessage["copies"]>();
  const local: SubmitMessage["copies"] = [];
  for (const c of req.copies) {
    if (!isRemoteId(c.accountId)) {
      check(c.accountId === me.accountId, "a federated send carries only its own account's copies");
      local.push(c);
      continue;
    }
    check(c.type === 1 || c.type === 2, "copy type is not valid");
    check(
      c.body.length > 0 && c.body.length <= LIMITS.maxCiphertextBytes,
      "copy body size out of range",
    );
    let list = remote.get(c.accountId);
    if (!list) remote.set(c.accountId, (list = []));
    list.push(c);
  }
  const now = ctx.now();
  for (const [address, copies] of remote) {
    const { name, provider } = parseRemote(address);
    requireEnabled(s, me.accountId, provider);
    s.store.addContact(me.accountId, address);
    try {
      await s.federation.deliver(provider, {
        messageId,
        senderAccount: me.accountId,
        senderDevice: me.deviceId,
        recipient: name,
        serverTimestamp: BigInt(now),
        copies: copies.map((c) => ({
          accountId: name,
          deviceId: c.deviceId,
          registrationId: c.registrationId,
          type: c.type,
          body: c.body,
        })),
      });
    } catch (err) {
      const e = linkError(err);
      if (InteropError.is(err) && err.mismatches)
        (e as ServerError & { mismatches?: unknown }).mismatches = err.mismatches.map((m) => ({
          ...m,
          accountId: address,
        }));
      throw e;
    }
  }
  if (local.length === 0)
    return { case: "submit", value: { serverTimestamp: BigInt(now), duplicate: false } };
  return messages.submitMessage(ctx, caller, { ...req, copies: local, federated: false });
}

/**
 * A Sender Key ciphertext for a group with members on other providers: stored for the local
 * member devices as any group message, then handed to each remote member's provider (now, or
 * durably queued while it is down), which stores it for every device of that member. A member
 * whose provider refuses (they opted out since) is skipped, not a failure of the whole send.
 */
export async function submitGroupFederated(
  ctx: RelayContext,
  caller: Caller,
  req: SubmitGroupMessage,
): Promise<HandlerResult> {
  const me = requireDevice(caller);
  const s = service(ctx);
  check(/^[A-Za-z0-9_-]{8,64}$/.test(req.groupId), "group id is not valid");
  if (!(await ctx.store.getGroup(req.groupId))) {
    const host = s.store.groupHost(req.groupId);
    if (host) return submitToHost(ctx, s, me, host, req);
  }
  const outcome = await messages.submitGroupMessage(ctx, caller, { ...req, federated: false });
  const result = isPending(outcome) ? await outcome.pending : outcome;
  const group = await ctx.store.getGroup(req.groupId);
  const now = ctx.now();
  for (const member of group?.members.filter(isRemoteId) ?? []) {
    const { name, provider } = parseRemote(member);
    if (!s.federation.isPartner(provider)) continue;
    try {
      await s.federation.deliver(provider, {
        messageId: req.messageId,
        senderAccount: me.accountId,
        senderDevice: me.deviceId,
        recipient: name,
        groupId: req.groupId,
        serverTimestamp: BigInt(now),
        copies: [{ accountId: name, deviceId: 0, registrationId: 0, type: 3, body: req.body }],
      });
    } catch (err) {
      ctx.logger.warn({ code: linkError(err).code }, "group message not forwarded to a member");
    }
  }
  return result;
}

/**
 * A local member's Sender Key ciphertext for a group another provider hosts: handed to the host
 * (now, or durably queued while it is down), which checks membership and the revision and fans
 * it out to every member device but the sending one. A refusal (no longer a member: "NotFound";
 * the group changed: "Conflict") comes back as the relay's own error.
 */
async function submitToHost(
  ctx: RelayContext,
  s: InteropService,
  me: { accountId: string; deviceId: number },
  host: string,
  req: SubmitGroupMessage,
): Promise<HandlerResult> {
  const messageId = checkMessageId(req.messageId);
  check(
    req.body.length > 0 && req.body.length <= LIMITS.maxCiphertextBytes,
    "body size out of range",
  );
  requireEnabled(s, me.accountId, host);
  const now = ctx.now();
  try {
    await s.federation.deliver(host, {
      messageId,
      senderAccount: me.accountId,
      senderDevice: me.deviceId,
      recipient: "",
      groupId: req.groupId,
      groupRevision: req.groupRevision,
      serverTimestamp: BigInt(now),
      copies: [{ accountId: "", deviceId: 0, registrationId: 0, type: 3, body: req.body }],
    });
  } catch (err) {
    throw linkError(err);
  }
  return { case: "submit", value: { serverTimestamp: BigInt(now), duplicate: false } };
}

/** A member name as the host provider `host` gives it, as this provider names it. */
function fromHost(s: InteropService, host: string, member: string): string {
  if (!isRemoteId(member)) return `${member}@${host}`;
  const at = member.lastIndexOf("@");
  return member.slice(at + 1) === s.provider ? member.slice(0, at) : member;
}

/** The partner hosting a group this relay does not hold, when one told it (else undefined). */
async function hostOf(
  ctx: RelayContext,
  groupId: string,
): Promise<{ s: InteropService; host: string } | undefined> {
  const s = services.get(ctx);
  if (!s || !/^[A-Za-z0-9_-]{8,64}$/.test(groupId)) return undefined;
  const host = s.store.groupHost(groupId);
  if (!host || (await ctx.store.getGroup(groupId))) return undefined;
  return { s, host };
}

async function askHost(
  s: InteropService,
  host: string,
  accountId: string,
  groupId: string,
  leave: boolean,
): Promise<HandlerResult> {
  const group = await ask(
    s,
    host,
    { case: "groupGet", value: { groupId, asker: accountId, leave } },
    "group",
  );
  return {
    case: "group",
    value: {
      groupId,
      name: group.name,
      members: group.members.map((m) => fromHost(s, host, m)),
      revision: group.revision,
      refused: [],
    },
  };
}

/** GroupGet: a local group, or one another provider hosts (asked of it over the link). */
export async function groupGet(
  ctx: RelayContext,
  caller: Caller,
  req: GroupGet,
): Promise<HandlerResult> {
  const me = requireDevice(caller);
  const remote = await hostOf(ctx, req.groupId);
  if (!remote) return messages.groupGet(ctx, caller, req);
  requireEnabled(remote.s, me.accountId, remote.host);
  return askHost(remote.s, remote.host, me.accountId, req.groupId, false);
}

/**
 * GroupUpdate: adding or removing users of other providers (see {@link groupUpdateFederated}); a member
 * leaving a group another provider hosts (removing only themself), asked of the host; else the
 * relay's own. Other changes to a remotely hosted group are made on its host.
 */
export async function groupUpdate(
  ctx: RelayContext,
  caller: Caller,
  req: GroupUpdate,
): Promise<HandlerResult> {
  if (req.add.some(isRemoteId) || req.remove.some(isRemoteId))
    return groupUpdateFederated(ctx, caller, req);
  const me = requireDevice(caller);
  const remote = await hostOf(ctx, req.groupId);
  if (!remote) return messages.groupUpdate(ctx, caller, req);
  if (req.add.length > 0 || req.remove.length !== 1 || req.remove[0] !== me.accountId)
    throw new ServerError(
      "InvalidRequest",
      "a group another provider hosts is changed there; members here may only leave",
    );
  return askHost(remote.s, remote.host, me.accountId, req.groupId, true);
}

/** BlobDownload of a blob another provider holds (a remote sender's media), through the link. */
export async function downloadRemoteBlob(
  ctx: RelayContext,
  caller: Caller,
  req: BlobDownload,
): Promise<HandlerResult> {
  const me = requireDevice(caller);
  const s = service(ctx);
  requireEnabled(s, me.accountId, req.provider);
  check(req.length > 0 && req.length <= LIMITS.maxBlobChunkBytes, "length out of range");
  const data = await ask(
    s,
    req.provider,
    {
      case: "blobDownload",
      value: { blobId: req.blobId, offset: req.offset, length: req.length },
    },
    "blobData",
  );
  return { case: "blobData", value: data };
}

interface Refusal {
  accountId: string;
  reason: string;
}

/**
 * Admission to a cross-provider group: a remote user is asked of its provider (opted in, and
 * its group policy allows this adder); a local user must have enabled every provider the group
 * spans. Whoever is not admitted is listed with the reason.
 */
async function admit(
  ctx: RelayContext,
  s: InteropService,
  adder: string,
  candidates: string[],
  alreadyProviders: Set<string>,
  groupId: string,
): Promise<{ admitted: string[]; refused: Refusal[] }> {
  const refused: Refusal[] = [];
  const admittedRemote: string[] = [];
  for (const address of candidates.filter(isRemoteId)) {
    const { name, provider } = parseRemote(address);
    if (!s.federation.isPartner(provider)) {
      refused.push({ accountId: address, reason: "unknown-provider" });
      continue;
    }
    requireEnabled(s, adder, provider);
    const admission = await ask(
      s,
      provider,
      { case: "admission", value: { accountId: name, adder, groupId } },
      "admission",
    );
    if (admission.admitted) admittedRemote.push(address);
    else refused.push({ accountId: address, reason: admission.reason });
  }
  const providers = new Set(alreadyProviders);
  for (const a of admittedRemote) providers.add(parseRemote(a).provider);
  const admitted: string[] = [...admittedRemote];
  for (const id of candidates.filter((c) => !isRemoteId(c))) {
    checkAccountId(id);
    if (!(await ctx.store.getAccount(id)))
      throw new ServerError("NotFound", "a member has no account");
    const enabled = new Set(s.store.getPrivacy(id).providers);
    if (id !== adder && [...providers].some((p) => !enabled.has(p)))
      refused.push({ accountId: id, reason: "interop-off" });
    else admitted.push(id);
  }
  return { admitted, refused };
}

function groupView(g: GroupRecord, refused: Refusal[]): HandlerResult {
  return {
    case: "group",
    value: {
      groupId: g.groupId,
      name: g.name,
      members: g.members,
      revision: BigInt(g.revision),
      refused,
    },
  };
}

/** GroupCreate naming users of other providers (see {@link admit}). */
export async function groupCreateFederated(
  ctx: RelayContext,
  caller: Caller,
  req: GroupCreate,
): Promise<HandlerResult> {
  const me = requireDevice(caller);
  const s = service(ctx);
  check(req.members.length <= LIMITS.maxGroupMembers, "too many members");
  const candidates = [...new Set(req.members)].filter((m) => m !== me.accountId);
  const groupId = randomBytes(12).toString("base64url");
  const { admitted, refused } = await admit(ctx, s, me.accountId, candidates, new Set(), groupId);
  const group: GroupRecord = {
    groupId,
    name: checkText(req.name, "group name"),
    members: [me.accountId, ...admitted],
    revision: 1,
    createdBy: me.accountId,
  };
  wakeNotified(ctx, await ctx.store.createGroup(group, groupNotice(ctx, me.accountId, me)));
  return groupView(group, refused);
}

/** GroupUpdate adding users of other providers (see {@link admit}). */
export async function groupUpdateFederated(
  ctx: RelayContext,
  caller: Caller,
  req: GroupUpdate,
): Promise<HandlerResult> {
  const me = requireDevice(caller);
  const s = service(ctx);
  check(/^[A-Za-z0-9_-]{8,64}$/.test(req.groupId), "group id is not valid");
  const g = await ctx.store.getGroup(req.groupId);
  if (!g?.members.includes(me.accountId)) throw new ServerError("NotFound", "no such group");
  const spans = new Set(g.members.filter(isRemoteId).map((m) => parseRemote(m).provider));
  const candidates = [...new Set(req.add)].filter((m) => !g.members.includes(m));
  const { admitted, refused } = await admit(ctx, s, me.accountId, candidates, spans, req.groupId);
  const updated = await ctx.store.updateGroup(
    req.groupId,
    {
      add: admitted,
      remove: req.remove.map((r) => (isRemoteId(r) ? r : checkAccountId(r))),
    },
    groupNotice(ctx, me.accountId, me),
  );
  wakeNotified(ctx, updated);
  return groupView(updated, refused);
}

/**
 * The partner-facing side: what this relay answers over a link. A user who did not enable
 * third-party chats with the asking provider is indistinguishable from no user at all.
 */
export function federationHandler(
  ctx: RelayContext,
  getService: () => InteropService,
): FederationHandler {
  const visible = async (accountId: string, partner: string) => {
    if (!/^[a-z0-9._-]{1,64}$/.test(accountId)) return undefined;
    const account = await ctx.store.getAccount(accountId);
    if (!account) return undefined;
    return getService().store.getPrivacy(accountId).providers.includes(partner)
      ? account
      : undefined;
  };
  /**
   * A member on `partner` sends to a group hosted here: one Sender Key ciphertext, stored for
   * every local member device and passed on to every remote member's provider (the sender's
   * own included, for its other devices). Deduplicated by sender device and message id; a retry
   * passes it on again (each provider deduplicates too).
   */
  const hostGroupMessage = async (
    partner: string,
    req: FedDeliver,
  ): Promise<{ duplicate: boolean }> => {
    check(/^[A-Za-z0-9_-]{8,64}$/.test(req.groupId), "group id is not valid");
    const messageId = checkMessageId(req.messageId);
    check(/^[a-z0-9._-]{1,64}$/.test(req.senderAccount), "sender is not valid");
    check(req.senderDevice >= 1 && req.senderDevice <= 127, "sender device out of range");
    const copy = req.copies[0];
    check(
      req.copies.length === 1 &&
        copy?.type === 3 &&
        copy.body.length > 0 &&
        copy.body.length <= LIMITS.maxCiphertextBytes,
      "a group message carries one sender-key ciphertext",
    );
    const sender = `${req.senderAccount}@${partner}`;
    const g = await ctx.store.getGroup(req.groupId);
    if (!g?.members.includes(sender)) throw new ServerError("NotFound", "no such group");
    if (!req.lenient && req.groupRevision !== 0n && Number(req.groupRevision) !== g.revision)
      throw new ServerError("Conflict", "the group changed; refresh its members and sender keys");
    const now = ctx.now();
    const envelope = encodeQueuedEnvelope({
      senderAccount: sender,
      senderDevice: req.senderDevice,
      type: 3,
      body: copy.body,
      groupId: g.groupId,
      messageId,
      serverTimestamp: now,
    });
    const inserts: QueueInsert[] = [];
    for (const member of g.members.filter((m) => !isRemoteId(m)))
      for (const d of await ctx.store.listDevices(member))
        inserts.push({ accountId: member, deviceId: d.deviceId, envelope });
    let duplicate = false;
    if (inserts.length > 0) {
      const r = await ctx.store.enqueue(inserts, {
        now,
        expiresAt: now + ctx.config.queueTtlMs,
        dedupKey: ctx.submissionKey(`fed|${sender}|${req.senderDevice}`, messageId),
      });
      duplicate = r.duplicate;
      if (!r.duplicate) for (const i of inserts) ctx.notify(i.accountId, i.deviceId);
    }
    const s = getService();
    for (const member of g.members.filter(isRemoteId)) {
      const { name, provider } = parseRemote(member);
      if (!s.federation.isPartner(provider)) continue;
      try {
        await s.federation.deliver(provider, {
          messageId,
          senderAccount: req.senderAccount,
          senderDevice: req.senderDevice,
          recipient: name,
          groupId: g.groupId,
          groupSender: sender,
          serverTimestamp: BigInt(now),
          copies: [{ accountId: name, deviceId: 0, registrationId: 0, type: 3, body: copy.body }],
        });
      } catch (err) {
        ctx.logger.warn({ code: linkError(err).code }, "group message not forwarded to a member");
      }
    }
    return { duplicate };
  };
  return {
    async fetchDevices(partner, req) {
      const account = await visible(req.accountId, partner);
      if (!account) throw new ServerError("NotFound", "no such account");
      const devices = await ctx.store.listDevices(req.accountId);
      return {
        accountId: req.accountId,
        accountKey: account.accountKey,
        signedDeviceList: account.signedDeviceList,
        devices: devices.map((d) => ({
          deviceId: d.deviceId,
          registrationId: d.registrationId,
          identityKey: d.identityKey,
          signedDeviceIdentity: d.signedDeviceIdentity,
        })),
      };
    },
    async fetchPrekeyBundles(partner, req) {
      if (!(await visible(req.accountId, partner)))
        throw new ServerError("NotFound", "no such account");
      const bundles = await messages.takePreKeyBundles(
        ctx,
        req.accountId,
        req.deviceIds,
        `fed|${partner}|${req.asker}`,
      );
      return { bundles };
    },
    async deliver(partner, req) {
      if (req.groupId !== "" && req.recipient === "") return hostGroupMessage(partner, req);
      if (!(await visible(req.recipient, partner)))
        throw new ServerError("NotFound", "no such account");
      const messageId = checkMessageId(req.messageId);
      check(/^[a-z0-9._-]{1,64}$/.test(req.senderAccount), "sender is not valid");
      check(req.senderDevice >= 1 && req.senderDevice <= 127, "sender device out of range");
      check(req.copies.length > 0 && req.copies.length <= 127, "copy count out of range");
      const now = ctx.now();
      if (req.groupSender !== "")
        check(
          /^[a-z0-9._-]{1,64}$/.test(req.groupSender) || REMOTE.test(req.groupSender),
          "group sender is not valid",
        );
      // A member's message the group's host passes on names that member; else the sender is
      // the partner's own user.
      const sender =
        req.groupSender !== ""
          ? fromHost(getService(), partner, req.groupSender)
          : `${req.senderAccount}@${partner}`;
      const dedupKey = ctx.submissionKey(
        `fed|${sender}|${req.senderDevice}|${req.recipient}`,
        messageId,
      );
      if (req.groupId !== "") {
        // One Sender Key ciphertext for every device of the member (the sender cannot know them).
        check(/^[A-Za-z0-9_-]{8,64}$/.test(req.groupId), "group id is not valid");
        const copy = req.copies[0];
        check(
          req.copies.length === 1 &&
            copy?.type === 3 &&
            copy.body.length > 0 &&
            copy.body.length <= LIMITS.maxCiphertextBytes,
          "a group delivery carries one sender-key ciphertext",
        );
        const envelope = encodeQueuedEnvelope({
          senderAccount: sender,
          senderDevice: req.senderDevice,
          type: 3,
          body: copy.body,
          groupId: req.groupId,
          messageId,
          serverTimestamp: now,
        });
        // Group deliveries come from the group's host: remember it, so this member can send.
        getService().store.setGroupHost(req.groupId, partner);
        const inserts = (await ctx.store.listDevices(req.recipient))
          .filter((d) => !(sender === req.recipient && d.deviceId === req.senderDevice))
          .map((d) => ({ accountId: req.recipient, deviceId: d.deviceId, envelope }));
        if (inserts.length === 0) return { duplicate: false };
        const r = await ctx.store.enqueue(inserts, {
          now,
          expiresAt: now + ctx.config.queueTtlMs,
          dedupKey,
        });
        if (!r.duplicate) for (const i of inserts) ctx.notify(i.accountId, i.deviceId);
        return { duplicate: r.duplicate };
      }
      const devices = new Map(
        (await ctx.store.listDevices(req.recipient)).map((d) => [d.deviceId, d]),
      );
      const copies = req.copies.filter((c) => {
        check(c.accountId === req.recipient, "copy for another account");
        check(c.type === 1 || c.type === 2, "copy type is not valid");
        check(c.body.length > 0 && c.body.length <= LIMITS.maxCiphertextBytes, "copy body size");
        return !req.lenient || devices.get(c.deviceId)?.registrationId === c.registrationId;
      });
      if (!req.lenient) {
        const named = new Set(copies.map((c) => c.deviceId));
        const missing = [...devices.keys()].filter((id) => !named.has(id));
        const extra = [...named].filter((id) => !devices.has(id));
        const stale = copies
          .filter(
            (c) =>
              devices.has(c.deviceId) &&
              devices.get(c.deviceId)?.registrationId !== c.registrationId,
          )
          .map((c) => c.deviceId);
        if (missing.length || extra.length || stale.length) {
          const err = new ServerError("MismatchedDevices", "the device set does not match");
          (err as ServerError & { mismatches?: unknown }).mismatches = [
            { accountId: req.recipient, missing, extra, stale },
          ];
          throw err;
        }
      }
      if (copies.length === 0) return { duplicate: false };
      const inserts: QueueInsert[] = copies.map((c) => ({
        accountId: req.recipient,
        deviceId: c.deviceId,
        envelope: encodeQueuedEnvelope({
          senderAccount: sender,
          senderDevice: req.senderDevice,
          type: c.type,
          body: c.body,
          messageId,
          serverTimestamp: now,
        }),
      }));
      const result = await ctx.store.enqueue(inserts, {
        now,
        expiresAt: now + ctx.config.queueTtlMs,
        dedupKey,
      });
      if (!result.duplicate) for (const i of inserts) ctx.notify(i.accountId, i.deviceId);
      return { duplicate: result.duplicate };
    },
    async blobDownload(_partner, req) {
      check(req.length > 0 && req.length <= LIMITS.maxBlobChunkBytes, "length out of range");
      const { data, total } = await ctx.blobs.read(req.blobId, Number(req.offset), req.length);
      return { data, totalSize: BigInt(total) };
    },
    async admission(partner, req) {
      if (!(await visible(req.accountId, partner)))
        return { admitted: false, reason: "interop-off" };
      const policy = getService().store.getPrivacy(req.accountId).groups;
      if (policy === "nobody") return { admitted: false, reason: "groups-nobody" };
      const remember = () => {
        if (/^[A-Za-z0-9_-]{8,64}$/.test(req.groupId))
          getService().store.setGroupHost(req.groupId, partner);
      };
      if (
        policy === "contacts" &&
        !getService().store.isContact(req.accountId, `${req.adder}@${partner}`)
      )
        return { admitted: false, reason: "groups-contacts-only" };
      remember();
      return { admitted: true, reason: "" };
    },
    async groupGet(partner, req) {
      check(/^[A-Za-z0-9_-]{8,64}$/.test(req.groupId), "group id is not valid");
      check(/^[a-z0-9._-]{1,64}$/.test(req.asker), "asker is not valid");
      const member = `${req.asker}@${partner}`;
      const g = await ctx.store.getGroup(req.groupId);
      if (!g?.members.includes(member)) throw new ServerError("NotFound", "no such group");
      // A remote member leaving: the local members' devices are told (the member's own
      // provider answers its device from this reply).
      let out = g;
      if (req.leave) {
        const updated = await ctx.store.updateGroup(
          g.groupId,
          { add: [], remove: [member] },
          groupNotice(ctx, member),
        );
        wakeNotified(ctx, updated);
        out = updated;
      }
      return {
        groupId: out.groupId,
        name: out.name,
        members: out.members,
        revision: BigInt(out.revision),
        refused: [],
      };
    },
  };
}
