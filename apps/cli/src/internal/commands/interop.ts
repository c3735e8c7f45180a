import {
  capabilityList,
  getInteropSettings,
  isGroupPolicy,
  isProviderName,
  setInteropSettings,
  type InteropSettings,
} from "@pairwise/interop-adapters";
import type { Command } from "../command.ts";
import { connectDevice, identityOf, withDevice } from "../device-session.ts";
import { usageError } from "../errors.ts";
import { explainRefusals, printResult } from "../output.ts";

/** The JSON form: settings, and per partner its link state and what it carries. */
function toJson(s: InteropSettings) {
  return {
    provider: s.provider,
    partners: s.partners,
    enabled: s.enabled,
    groups: s.groups,
    links: Object.fromEntries(
      s.partnerInfo.map((p) => [
        p.name,
        { state: p.state, carries: p.capabilities ? capabilityList(p.capabilities) : null },
      ]),
    ),
  };
}

function describe(s: InteropSettings): string {
  const partners = s.partners.length ? s.partners.join(", ") : "none";
  const enabled = s.enabled.length ? s.enabled.join(", ") : "none (third-party chats are off)";
  return [
    `this provider: ${s.provider}`,
    `partner providers: ${partners}`,
    ...s.partnerInfo.map(
      (p) =>
        `  ${p.name}: ${p.state}; carries ${p.capabilities ? capabilityList(p.capabilities).join(", ") : "(not known yet)"}`,
    ),
    `third-party chats enabled with: ${enabled}`,
    `who may add you to third-party groups: ${s.groups}`,
  ].join("\n");
}

const REFUSALS = {
  NotFound: "your server does not federate with that provider (or with any)",
};

/** `pairwise interop status|enable PROVIDER|disable PROVIDER|groups everyone|contacts|nobody`. */
export const interopCommand: Command = {
  name: "interop",
  summary: "third-party chats with other providers: status, enable, disable, group policy",
  synopsis:
    "interop status | interop enable PROVIDER | interop disable PROVIDER | interop groups everyone|contacts|nobody",
  help: `Users of other providers (EU DMA interoperability) are written to as name@provider.
Third-party chats are off until you enable a provider; your server enforces these settings for
every device of your account, and a user who has not enabled your provider cannot be found.

interop status              your provider, its partners and your settings
interop enable PROVIDER     accept third-party chats with PROVIDER
interop disable PROVIDER    stop them (you become unreachable and undiscoverable from there)
interop groups POLICY       who may add you to third-party groups: everyone, contacts (people
                              you have written to), or nobody

Output (--json): {"provider":S,"partners":[...],"enabled":[...],"groups":POLICY,
  "links":{PROVIDER:{"state":S,"carries":[...] or null}}}`,
  options: {},
  positionals: ["ACTION", "ARG..."],
  budgetMs: (ctx) => 4 * ctx.timeoutMs,
  async run(ctx, { positionals }) {
    const [action = "", arg, extra] = positionals;
    if (extra !== undefined) throw usageError("interop takes at most one argument");
    let change: Parameters<typeof setInteropSettings>[1] | undefined;
    if (action === "status") {
      if (arg !== undefined) throw usageError("interop status takes no argument");
    } else if (action === "enable" || action === "disable") {
      if (!isProviderName(arg)) throw usageError(`interop ${action} needs a PROVIDER name`);
      change = action === "enable" ? { enable: [arg] } : { disable: [arg] };
    } else if (action === "groups") {
      if (!isGroupPolicy(arg))
        throw usageError("interop groups takes everyone, contacts or nobody");
      change = { groups: arg };
    } else {
      throw usageError("interop takes status, enable, disable or groups");
    }
    const settings = await withDevice(ctx, async (device) => {
      identityOf(ctx, device);
      await connectDevice(ctx, device);
      return explainRefusals(
        change ? setInteropSettings(device, change) : getInteropSettings(device),
        REFUSALS,
      );
    });
    printResult(ctx, toJson(settings), describe(settings));
  },
};
