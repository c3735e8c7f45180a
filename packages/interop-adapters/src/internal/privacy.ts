import { expectResult, isRemoteAddress, type PairwiseDevice } from "@pairwise/client";
import {
  CAPABILITY_NAMES,
  defineCapabilities,
  type AdapterCapabilities,
  type CapabilityName,
  type ConnectionState,
} from "./adapter.ts";
import { InteropError } from "./errors.ts";

/** Who may add me to third-party (cross-provider) groups. */
export type GroupPolicy = "everyone" | "contacts" | "nobody";

/** The group policy values, in the order the CLI lists them. */
export const GROUP_POLICIES: readonly GroupPolicy[] = ["everyone", "contacts", "nobody"];

/** A user's third-party chat settings, as the server enforces them. */
export interface InteropSettings {
  /** This server's provider name. */
  provider: string;
  /** Providers this server federates with. */
  partners: string[];
  /** Providers this user accepts chats with (none by default: third-party chats are off). */
  enabled: string[];
  /** Who may add this user to third-party groups ("contacts": people this user has written to). */
  groups: GroupPolicy;
  /** Each partner's link state and what it declared it carries (undefined: not known yet). */
  partnerInfo: Array<{
    name: string;
    state: ConnectionState;
    capabilities: AdapterCapabilities | undefined;
  }>;
}

/** True for a valid {@link GroupPolicy}. */
export function isGroupPolicy(value: unknown): value is GroupPolicy {
  return typeof value === "string" && (GROUP_POLICIES as readonly string[]).includes(value);
}

const PROVIDER = /^[a-z0-9][a-z0-9.-]{0,62}$/;

/** True for a syntactically valid provider name. */
export function isProviderName(value: unknown): value is string {
  return typeof value === "string" && PROVIDER.test(value);
}

const STATES = new Set<string>(["connecting", "connected", "backing-off", "refused", "stopped"]);

function toSettings(v: {
  provider: string;
  partners: string[];
  providers: string[];
  groups: string;
  partnerInfo: Array<{
    name: string;
    state: string;
    capabilitiesKnown: boolean;
    capabilities: string[];
  }>;
}): InteropSettings {
  return {
    provider: v.provider,
    partners: [...v.partners],
    enabled: [...v.providers],
    groups: isGroupPolicy(v.groups) ? v.groups : "contacts",
    partnerInfo: v.partnerInfo.map((p) => ({
      name: p.name,
      state: (STATES.has(p.state) ? p.state : "backing-off") as ConnectionState,
      capabilities: p.capabilitiesKnown
        ? defineCapabilities(
            true,
            p.capabilities.filter((c): c is CapabilityName =>
              (CAPABILITY_NAMES as readonly string[]).includes(c),
            ),
          )
        : undefined,
    })),
  };
}

/** Reads this account's third-party chat settings from its server. Throws `ClientError`. */
export async function getInteropSettings(device: PairwiseDevice): Promise<InteropSettings> {
  const r = await device.requireConnection().request({ case: "interopGet", value: {} });
  return toSettings(expectResult(r, "interopSettings"));
}

/**
 * Changes this account's third-party chat settings (enforced by the server for every device of
 * the account). Throws `InteropError("InvalidArgument")` for a bad provider or policy (nothing
 * is sent), `ClientError` when the server refuses (e.g. a provider that is not a partner).
 */
export async function setInteropSettings(
  device: PairwiseDevice,
  change: { enable?: string[]; disable?: string[]; groups?: GroupPolicy },
): Promise<InteropSettings> {
  for (const p of [...(change.enable ?? []), ...(change.disable ?? [])])
    if (!isProviderName(p)) throw new InteropError("InvalidArgument", "provider name is not valid");
  if (change.groups !== undefined && !isGroupPolicy(change.groups))
    throw new InteropError("InvalidArgument", "group policy must be everyone, contacts or nobody");
  const r = await device.requireConnection().request({
    case: "interopSet",
    value: {
      enable: change.enable ?? [],
      disable: change.disable ?? [],
      groups: change.groups ?? "",
    },
  });
  return toSettings(expectResult(r, "interopSettings"));
}

/** True when a chat (an address) is a third-party chat: it is labelled as such everywhere. */
export function isThirdPartyChat(chat: string): boolean {
  return isRemoteAddress(chat);
}

/** The label every client shows on a third-party chat. */
export const THIRD_PARTY_LABEL = "third-party";
