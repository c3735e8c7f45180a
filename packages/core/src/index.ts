// @pairwise/core: the protocol and crypto of Pairwise. Named exports only; implementation lives
// in ./internal and is not reachable through the exports map.
export { CoreError, type CoreErrorCode } from "./internal/errors.ts";

export { createMemoryStore } from "./internal/store/memory-store.ts";
export { openSqliteStore, type SqliteStoreOptions } from "./internal/store/sqlite-store.ts";
export type { KeyValueStore, StoreTable, StoreWrite } from "./internal/store/kv-store.ts";
export {
  DeviceState,
  StateTransaction,
  StateView,
  addressKey,
  type ContactKeyRecord,
  type DeviceAddress,
  type DeviceListCache,
  type GroupSenderState,
  type LocalAccount,
  type LocalIdentity,
} from "./internal/store/device-state.ts";

export {
  DEFAULT_PREKEY_POLICY,
  MAX_PREKEY_ID,
  createAccountKey,
  preKeysToUpload,
  shouldRotateSignedPreKey,
  verifyIdentitySignature,
  type PreKeyPolicy,
  type PublicPreKey,
  type PublicSignedPreKey,
} from "./internal/keys.ts";
export {
  decodePreKeyBundle,
  encodePreKeyBundle,
  type PreKeyBundleInfo,
} from "./internal/prekey-bundle.ts";
export {
  DeviceCrypto,
  type DeviceCiphertext,
  type DeviceCryptoOptions,
  type EncryptTarget,
  type KeyUpload,
} from "./internal/device-crypto.ts";
export { GroupCrypto, type GroupDistribution } from "./internal/group-crypto.ts";
export {
  MAX_CONTENT_BYTES,
  decodeContent,
  decryptContent,
  encodeContent,
  encryptContent,
  encryptContents,
  type ContentInit,
  type DecryptedContent,
} from "./internal/content.ts";

export {
  LINK_SECRET_BYTES,
  LINK_URI_MAX_LENGTH,
  LINK_URI_PREFIX,
  LINK_URI_VERSION,
  computeLinkHmac,
  createEphemeralLinkKeys,
  createLinkSecret,
  decodeLinkUri,
  encodeLinkUri,
  verifyLinkHmac,
  type EphemeralLinkKeys,
  type LinkUri,
} from "./internal/link-uri.ts";
export {
  MAX_PROVISIONING_ENVELOPE_BYTES,
  PROVISIONING_INFO,
  PROVISIONING_VERSION,
  openProvisioningEnvelope,
  sealProvisioningMessage,
  type OpenProvisioningOptions,
  type ProvisioningPayload,
  type SealProvisioningOptions,
} from "./internal/provisioning.ts";
export {
  PAIRING_CODE_ALPHABET,
  PAIRING_CODE_KEY_BYTES,
  PAIRING_CODE_LENGTH,
  PAIRING_CODE_PBKDF2_ITERATIONS,
  createPairingCode,
  normalizePairingCode,
  stretchPairingCode,
} from "./internal/pairing-code.ts";
export {
  SECURITY_CODE_ITERATIONS,
  SECURITY_CODE_SCANNABLE_BYTES,
  SECURITY_CODE_SCANNABLE_VERSION,
  compareScannableCodes,
  computeSecurityCode,
  type SecurityCode,
  type SecurityCodeOptions,
  type SecurityCodeParty,
} from "./internal/security-code.ts";

export {
  ACCOUNT_ID_PATTERN,
  MAX_DEVICE_ID,
  PRIMARY_DEVICE_ID,
  acceptDeviceIdentity,
  accountSignatureInput,
  createPrimaryDeviceIdentity,
  deviceSignatureInput,
  isValidAccountId,
  signDeviceIdentity,
  verifySignedDeviceIdentity,
  type CompletedDeviceIdentity,
  type DeviceIdentityInfo,
  type VerifyDeviceIdentityOptions,
} from "./internal/adv.ts";
export {
  DEVICE_LIST_MAX_AGE_MS,
  DEVICE_LIST_MAX_CLOCK_SKEW_MS,
  MAX_VALID_KEY_INDEXES,
  deviceListSignatureInput,
  nextDeviceListTimestamp,
  selectTrustedDevices,
  signDeviceList,
  verifySignedDeviceList,
  type CandidateDevice,
  type DeviceListInfo,
  type DeviceRejectionReason,
  type TrustedDevice,
  type TrustedDeviceSelection,
  type VerifyDeviceListOptions,
} from "./internal/device-list.ts";
export {
  acceptAccountKeyChange,
  knownDeviceListTimestamp,
  setContactVerified,
  verifyDevices,
  type ContactTrustEvent,
  type DeviceClaim,
  type VerifiedDevices,
} from "./internal/contacts.ts";
export {
  MAX_CALLEE_DEVICES,
  SRTP_MASTER_KEY_BYTES,
  SRTP_MASTER_SALT_BYTES,
  SRTP_MASTER_SECRET_BYTES,
  aesCmKeystream,
  createCallKeys,
  deriveSrtcpSessionKeys,
  deriveSrtpSessionKeys,
  splitSrtpMasterSecret,
  srtpPacketIv,
  type SrtpMaster,
  type SrtpSessionKeys,
} from "./internal/call-keys.ts";
export { PADDING_BLOCK_BYTES, padPlaintext, unpadPlaintext } from "./internal/padding.ts";
export { messageIdAt, newMessageId } from "./internal/message-id.ts";

export {
  BLOB_CHUNK_SIZE,
  BLOB_KEY_BYTES,
  BLOB_MAGIC,
  BLOB_MAX_HEADER_BYTES,
  BLOB_NONCE_BYTES,
  BLOB_TAG_BYTES,
  BLOB_VERSION,
  blobCiphertextSize,
  createBlobDecryptStream,
  createBlobEncryptStream,
  createBlobOpener,
  createBlobSealer,
  decryptBlob,
  encryptBlob,
  generateBlobKey,
  readBlobHeader,
  type BlobDecryptOptions,
  type BlobEncryptOptions,
  type BlobHeader,
  type BlobKeySlot,
  type BlobOpener,
  type BlobSealer,
  type BlobStream,
  type SealedChunk,
} from "./internal/blob.ts";
export {
  DEFAULT_HISTORY_PART_BYTES,
  DEFAULT_MAX_HISTORY_BYTES,
  HISTORY_BUNDLE_VERSION,
  MAX_HISTORY_PARTS,
  createHistorySyncParts,
  decodeHistoryBundle,
  encodeHistoryBundle,
  openHistorySyncParts,
  type CreateHistorySyncPartsOptions,
  type HistoryBundleInit,
  type OpenHistorySyncPartsOptions,
} from "./internal/history-sync.ts";
export {
  acceptDeviceIdentityBytes,
  signCompanionIdentityBytes,
  signDeviceListBytes,
  verifyDeviceIdentityBytes,
  verifyDeviceListBytes,
} from "./internal/verify-bytes.ts";
