import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ResponseSchema } from "@pairwise/core/relay-proto";
import type { Logger } from "pino";
import type { BlobStorage } from "./blob-storage.ts";
import type { ServerConfig } from "./config.ts";
import type { ServerMetrics } from "./metrics.ts";
import type { ProvisioningChannels, ProvisioningWaiter } from "./provisioning.ts";
import type { RateLimiter } from "./rate-limit.ts";
import type { DeviceRecord, ServerStore } from "./store/server-store.ts";

/** A message just committed to a device's queue. */
export interface QueuedMail {
  seq: number;
  envelope: Uint8Array;
}

/** What a request handler may use: shared by every connection of one server. */
export interface RelayContext {
  store: ServerStore;
  config: ServerConfig;
  logger: Logger;
  metrics: ServerMetrics;
  now: () => number;
  blobs: BlobStorage;
  provisioning: ProvisioningChannels;
  bundleLimiter: RateLimiter;
  /** In a cluster: hands a provisioning envelope to the node holding `ref` (false: none). */
  provisionRemote?: (ref: string, envelope: Uint8Array) => Promise<boolean>;
  /** In a cluster: how often an idle delivery loop re-reads its queue anyway. */
  pollMs?: number;
  /** The dedup key the store keeps for a submission (a keyed digest; see `submissionKeys`). */
  submissionKey(scope: string, messageId: string): string;
  /**
   * Wakes the delivery loop of a connected device: it has new mail. `mail` is the committed
   * message itself (its queue seq and bytes), so a device that is caught up gets it pushed
   * without a queue read; without it the loop reads the queue.
   */
  notify(accountId: string, deviceId: number, mail?: QueuedMail): void;
  /** Pushes DeviceRemoved to a connected device and closes its connection. */
  disconnect(accountId: string, deviceId: number): void;
  /** Pushes "prekeys low" to a connected device. */
  prekeysLow(
    accountId: string,
    deviceId: number,
    counts: { preKeys: number; kyberPreKeys: number },
  ): void;
}

/** The connection a request came in on. */
export interface Caller {
  /** The connection's Noise static key. */
  noiseKey: Uint8Array;
  /** The device this connection authenticated as (its noise key is registered), if any. */
  device: DeviceRecord | undefined;
  /** Binds the connection to a device after a successful registration. */
  authenticate(device: DeviceRecord): void;
  /** This connection as a provisioning waiter (a companion waiting to be linked). */
  waiter: ProvisioningWaiter;
  /** Starts pushing queued messages (after StartDelivery). */
  startDelivery(): void;
}

/** A handler's result: the Response's `result` oneof. */
export type HandlerResult = MessageInitShape<typeof ResponseSchema>["result"];

/**
 * A result that is ready once the request's writes commit (the store's group commit). The
 * session answers it when it settles and goes on with the device's next request meanwhile.
 */
export interface PendingResult {
  readonly pending: Promise<HandlerResult>;
}

/** What a handler returns: its result now, or once its writes commit. */
export type HandlerOutcome = HandlerResult | PendingResult;

/** True for a {@link PendingResult}. */
export function isPending(outcome: HandlerOutcome): outcome is PendingResult {
  return outcome !== undefined && "pending" in outcome;
}
