import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { EnvelopeSchema, GroupNoticeSchema } from "@pairwise/core/relay-proto";
import { describe, expect, it } from "vitest";
import { ClientError } from "./errors.ts";
import { isGroupNotice, parseGroupNotice } from "./group-notices.ts";

const notice = (over: MessageInitShape<typeof GroupNoticeSchema> = {}) =>
  toBinary(
    GroupNoticeSchema,
    create(GroupNoticeSchema, {
      groupId: "abcdefgh12",
      revision: 3n,
      name: "team",
      members: ["alice", "bob@other.example"],
      added: ["bob@other.example"],
      removed: ["carol"],
      by: "alice",
      ...over,
    }),
  );

const envelope = (over: MessageInitShape<typeof EnvelopeSchema> = {}) =>
  create(EnvelopeSchema, {
    seq: 7n,
    type: 4,
    body: notice(),
    groupId: "abcdefgh12",
    serverTimestamp: 1_700_000_000_000n,
    ...over,
  });

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return "ok";
  } catch (err) {
    return ClientError.is(err) ? err.code : "other";
  }
}

describe("group notices", () => {
  it("decodes a notice from the relay", () => {
    const n = parseGroupNotice(envelope());
    expect(n).toEqual({
      groupId: "abcdefgh12",
      name: "team",
      revision: 3,
      members: ["alice", "bob@other.example"],
      added: ["bob@other.example"],
      removed: ["carol"],
      by: "alice",
      timestamp: 1_700_000_000_000,
    });
    expect(isGroupNotice(JSON.parse(JSON.stringify(n)))).toBe(true);
  });

  it("refuses a notice that names a sender: only the relay originates them", () => {
    expect(codeOf(() => parseGroupNotice(envelope({ senderAccount: "mallory" })))).toBe(
      "ProtocolError",
    );
    expect(codeOf(() => parseGroupNotice(envelope({ senderDevice: 1 })))).toBe("ProtocolError");
  });

  it("refuses malformed or inconsistent notices with a typed error", () => {
    const bad = [
      envelope({ body: new Uint8Array([0xff, 0xff, 0xff]) }),
      envelope({ type: 2 }),
      envelope({ body: notice({ groupId: "x" }) }),
      envelope({ groupId: "zzzzzzzz99" }),
      envelope({ body: notice({ revision: 0n }) }),
      envelope({ body: notice({ revision: 2n ** 60n }) }),
      envelope({ body: notice({ by: "" }) }),
      envelope({ body: notice({ name: "a\u0000b" }) }),
      envelope({ body: notice({ members: ["alice", "alice"], added: [] }) }),
      envelope({ body: notice({ members: ["alice", "with space"], added: [] }) }),
      envelope({ body: notice({ added: ["dave"] }) }),
      envelope({ body: notice({ removed: ["alice"] }) }),
    ];
    for (const e of bad) expect(codeOf(() => parseGroupNotice(e))).toBe("ProtocolError");
  });
});
