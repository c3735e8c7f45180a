import { createGroup, listGroups, updateGroup } from "@pairwise/client";
import type { Command } from "../command.ts";
import { connectDevice, identityOf, withDevice } from "../device-session.ts";
import { usageError } from "../errors.ts";
import { explainRefusals, printResult } from "../output.ts";
import { parseRecipient } from "../validate.ts";

const THIRD_PARTY_OFF =
  "third-party chats with a member's provider are off for you: run 'pairwise interop enable PROVIDER'";

const REASONS: Record<string, string> = {
  "interop-off": "they have not enabled third-party chats with this group's providers",
  "groups-nobody": "they let nobody add them to third-party groups",
  "groups-contacts-only":
    "they let only people they have written to add them to third-party groups",
  "unknown-provider": "your server does not federate with their provider",
};

/** One line per person the server did not add, with the reason. */
function refusedLines(refused: Array<{ accountId: string; reason: string }> | undefined): string {
  return (refused ?? [])
    .map((r) => `\n${r.accountId} was not added: ${REASONS[r.reason] ?? r.reason}`)
    .join("");
}

const GROUP_ID = /^[A-Za-z0-9_-]{8,64}$/;

function groupId(value: string): string {
  const id = value.startsWith("group:") ? value.slice(6) : value;
  if (!GROUP_ID.test(id)) throw usageError("ID is not a group id");
  return id;
}

/** `pairwise group create NAME MEMBER...`, `group add|remove ID MEMBER`, `group list`. */
export const groupCommand: Command = {
  name: "group",
  summary: "create groups, add or remove members, list groups",
  synopsis:
    "group create NAME MEMBER... | group add ID MEMBER | group remove ID MEMBER | group list",
  help: `group create NAME MEMBER...   create a group with these accounts (you are added)
                                 output (--json): {"group":ID}
group add ID MEMBER            add an account; output: {"group":ID,"members":[...]}
group remove ID MEMBER         remove an account; your sender key is rotated, so the removed
                                 member cannot read what follows; output as for add
group list                     groups this device knows; output: [{"id","name","members"}]
Send to a group with 'pairwise send group:ID TEXT'.`,
  options: {},
  positionals: ["ACTION", "ARGS..."],
  budgetMs: (ctx) => 4 * ctx.timeoutMs,
  async run(ctx, { positionals }) {
    const [action = "", ...rest] = positionals;
    if (action === "list") {
      if (rest.length > 0) throw usageError("group list takes no arguments");
      const groups = await withDevice(ctx, (device) => {
        identityOf(ctx, device);
        return Promise.resolve(listGroups(device));
      });
      printResult(
        ctx,
        groups.map((g) => ({ id: g.id, name: g.name, members: g.members })),
        groups.map((g) => `group:${g.id}  ${g.name}  (${g.members.join(", ")})`).join("\n") ||
          "no groups",
      );
      return;
    }
    if (action === "create") {
      const [name = "", ...members] = rest;
      if (name === "" || members.length === 0)
        throw usageError("group create needs NAME and at least one MEMBER");
      for (const m of members) parseRecipient(m, "MEMBER");
      const group = await withDevice(ctx, async (device) => {
        identityOf(ctx, device);
        await connectDevice(ctx, device);
        return explainRefusals(createGroup(device, name, members), {
          NotFound: "a member has no account",
          Unauthorized: THIRD_PARTY_OFF,
        });
      });
      printResult(
        ctx,
        { group: group.id, ...(group.refused ? { refused: group.refused } : {}) },
        `created group:${group.id}${refusedLines(group.refused)}`,
      );
      return;
    }
    if (action === "add" || action === "remove") {
      const [rawId = "", member = "", extra] = rest;
      if (extra !== undefined) throw usageError(`group ${action} takes ID and one MEMBER`);
      const id = groupId(rawId);
      parseRecipient(member, "MEMBER");
      const group = await withDevice(ctx, async (device) => {
        identityOf(ctx, device);
        await connectDevice(ctx, device);
        return explainRefusals(
          updateGroup(device, id, action === "add" ? { add: [member] } : { remove: [member] }),
          {
            NotFound: "no such group or account",
            Unauthorized: THIRD_PARTY_OFF,
          },
        );
      });
      printResult(
        ctx,
        {
          group: group.id,
          members: group.members,
          ...(group.refused ? { refused: group.refused } : {}),
        },
        `group:${group.id}: ${group.members.join(", ")}${refusedLines(group.refused)}`,
      );
      return;
    }
    throw usageError(`unknown group action '${action}' (create, add, remove, list)`);
  },
};
