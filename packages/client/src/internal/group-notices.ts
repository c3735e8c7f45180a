import { fromBinary } from "@bufbuild/protobuf";
import { GroupNoticeSchema, type Envelope } from "@pairwise/core/relay-proto";
import { ClientError } from "./errors.ts";

/** Envelope type of a group notice (relay.proto): server-originated, not encrypted. */
export const GROUP_NOTICE_TYPE = 4;

/**
 * The relay's notice that a group's membership changed (see `device.on("group")`). The relay is
 * the authority for membership, so a notice needs no signature: it arrives over the relay's
 * authenticated channel, and no device or other provider can submit one.
 */
export interface GroupNotice {
  groupId: string;
  name: string;
  /** The group's revision after the change (1 when it was created). */
  revision: number;
  /** Every member after the change. */
  members: string[];
  /** Accounts that joined with this change (every member, on creation). */
  added: string[];
  /** Accounts that were removed or left. */
  removed: string[];
  /** The account that made the change. */
  by: string;
  /** When the relay queued it (ms). */
  timestamp: number;
}

const GROUP_ID = /^[A-Za-z0-9_-]{8,64}$/;
// Account ids as relays hand them out: a local name or `name@provider`; no control characters.
const ACCOUNT = /^[^\p{Cc}\s]{1,200}$/u;
const MAX_MEMBERS = 4096;
const MAX_NAME = 1024;

const bad = (what: string) => new ClientError("ProtocolError", `group notice: ${what}`);

function accounts(list: readonly string[], what: string): string[] {
  if (list.length > MAX_MEMBERS) throw bad(`too many ${what}`);
  for (const a of list) if (!ACCOUNT.test(a)) throw bad(`${what} holds an invalid account id`);
  if (new Set(list).size !== list.length) throw bad(`${what} repeats an account`);
  return [...list];
}

/**
 * Decodes and checks a group notice envelope. Throws `ClientError("ProtocolError")` when the
 * envelope has a sender (only the relay originates notices: a device's envelope always names
 * it) or the notice is malformed or inconsistent (an added account not among the members, a
 * removed one still among them).
 */
export function parseGroupNotice(e: Envelope): GroupNotice {
  if (e.type !== GROUP_NOTICE_TYPE) throw bad("wrong envelope type");
  if (e.senderAccount !== "" || e.senderDevice !== 0) throw bad("not from the relay");
  let n;
  try {
    n = fromBinary(GroupNoticeSchema, e.body, { readUnknownFields: false });
  } catch (cause) {
    throw new ClientError("ProtocolError", "group notice: not a GroupNotice", { cause });
  }
  if (!GROUP_ID.test(n.groupId)) throw bad("invalid group id");
  if (e.groupId !== "" && e.groupId !== n.groupId) throw bad("group id differs from the envelope");
  const revision = Number(n.revision);
  if (!Number.isSafeInteger(revision) || revision < 1) throw bad("invalid revision");
  if (n.name.length > MAX_NAME || /\p{Cc}/u.test(n.name)) throw bad("invalid name");
  if (!ACCOUNT.test(n.by)) throw bad("invalid author");
  const members = accounts(n.members, "members");
  const added = accounts(n.added, "added");
  const removed = accounts(n.removed, "removed");
  const current = new Set(members);
  if (added.some((a) => !current.has(a))) throw bad("an added account is not a member");
  if (removed.some((a) => current.has(a))) throw bad("a removed account is still a member");
  const timestamp = Number(e.serverTimestamp);
  return {
    groupId: n.groupId,
    name: n.name,
    revision,
    members,
    added,
    removed,
    by: n.by,
    timestamp: Number.isSafeInteger(timestamp) ? timestamp : 0,
  };
}

/** Whether a parsed JSON value (the durable inbox) is a group notice. */
export function isGroupNotice(v: unknown): v is GroupNotice {
  if (typeof v !== "object" || v === null) return false;
  const n = v as Record<string, unknown>;
  const list = (x: unknown) => Array.isArray(x) && x.every((a) => typeof a === "string");
  return (
    typeof n.groupId === "string" &&
    typeof n.name === "string" &&
    typeof n.revision === "number" &&
    list(n.members) &&
    list(n.added) &&
    list(n.removed) &&
    typeof n.by === "string" &&
    typeof n.timestamp === "number"
  );
}
