// @pairwise/client: the device runtime. Named exports only; implementation lives in ./internal.
export { ClientError, type ClientErrorCode, type ClientErrorDetails } from "./internal/errors.ts";
export {
  RelayConnection,
  expectResult,
  type RelayConnectionOptions,
  type RelayRequest,
  type RelayRequestInit,
  type RelayResult,
  type ResultValue,
} from "./internal/relay-connection.ts";
export {
  PRIMARY_WARNING_DAYS,
  PairwiseDevice,
  wireDeviceKeys,
  type DeviceEvents,
  type GroupNoticeHandler,
  type InboundHandler,
  type OpenDeviceOptions,
  type ServerInfo,
} from "./internal/device.ts";
export {
  listAllMessages,
  listMessages,
  recordMessage,
  type StoredMessage,
} from "./internal/history.ts";
export {
  approveLink,
  linkAsCompanion,
  unlinkDevice,
  type LinkRequest,
} from "./internal/linking.ts";
export { acceptNewKey, securityCode, verifyContact } from "./internal/safety.ts";
export { sendHistoryTo, importHistory } from "./internal/history-sync.ts";
export { parseGroupNotice, type GroupNotice } from "./internal/group-notices.ts";
export {
  createGroup,
  listGroups,
  sendGroupText,
  updateGroup,
  type GroupView,
} from "./internal/groups.ts";
export {
  MAX_RETRIES,
  OUTBOX_TTL_MS,
  answerRetry,
  pruneOutbox,
  requestRetry,
} from "./internal/retry.ts";
export { applyReceipt, markRead, queueDeliveryReceipt } from "./internal/receipts.ts";
export { findMessage, updateMessage } from "./internal/history.ts";
export { isRemoteAddress, parseRemoteAddress } from "./internal/remote-address.ts";
