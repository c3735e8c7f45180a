// @pairwise/interop-adapters: one adapter contract for third-party providers (federation,
// subpath ./federation) and bridges (Telegram, subpath ./telegram), and users' privacy
// controls. Named exports only; implementation lives in ./internal.
export { InteropError, type InteropErrorCode } from "./internal/errors.ts";
export {
  CAPABILITY_NAMES,
  capabilityList,
  defineCapabilities,
  degradeContent,
  type AdapterCapabilities,
  type AdapterContent,
  type CapabilityName,
  type CheckpointStep,
  type ConnectionState,
  type DeliveryCheckpoint,
  type InteropAdapter,
  type StateChange,
} from "./internal/adapter.ts";
export {
  GROUP_POLICIES,
  THIRD_PARTY_LABEL,
  getInteropSettings,
  isGroupPolicy,
  isProviderName,
  isThirdPartyChat,
  setInteropSettings,
  type GroupPolicy,
  type InteropSettings,
} from "./internal/privacy.ts";
export { sendThirdParty, type ThirdPartySendResult } from "./internal/third-party-send.ts";
export { isRemoteAddress, parseRemoteAddress } from "@pairwise/client";
