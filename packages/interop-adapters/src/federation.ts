// @pairwise/interop-adapters/federation: federation between Pairwise-compatible providers, used
// by the relay (apps/server). Named exports only.
export {
  Federation,
  createFederation,
  type FederationHandler,
  type FederationLogger,
  type FederationOptions,
  type FederationPartner,
  type FederationRequest,
} from "./internal/federation/federation.ts";
export {
  PAIRWISE_PROTOCOL,
  checkPartnerProtocol,
  type DeclaredProtocol,
} from "./internal/federation/protocol.ts";
export {
  openSqliteFederationStore,
  type FederationStore,
  type OutboundItem,
  type PrivacyRecord,
} from "./internal/federation/store.ts";
export { InteropError, type DeviceMismatchInfo, type InteropErrorCode } from "./internal/errors.ts";
export {
  capabilityList,
  defineCapabilities,
  type AdapterCapabilities,
  type CapabilityName,
  type ConnectionState,
} from "./internal/adapter.ts";
