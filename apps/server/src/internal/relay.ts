import type { SecureTransport } from "@pairwise/transport";
import type { Logger } from "pino";
import { DiskBlobStorage, type BlobStorage } from "./blob-storage.ts";
import type { ServerConfig } from "./config.ts";
import type { RelayContext } from "./context.ts";
import { ServerError } from "./errors.ts";
import { createServerMetrics, type ServerMetrics } from "./metrics.ts";
import { makeStamp, newerStamp, type ClusterBus } from "./cluster-bus.ts";
import { ProvisioningChannels } from "./provisioning.ts";
import { RateLimiter } from "./rate-limit.ts";
import { Session } from "./session.ts";
import type { DeviceRecord, ServerStore } from "./store/server-store.ts";
import { encodePush } from "./wire.ts";

/** Options of {@link Relay}. */
export interface RelayOptions {
  store: ServerStore;
  config: ServerConfig;
  logger: Logger;
  blobDir: string;
  /** Blob storage instead of the disk under `blobDir` (e.g. S3). */
  blobs?: BlobStorage;
  /** Links this node to the others of a cluster (wake-ups, removals, connection ownership). */
  bus?: ClusterBus;
  now?: () => number;
  /**
   * The dedup key of a submission: `submissionKeys` under the server's Noise static private key
   * (the same on every node of a cluster).
   */
  submissionKey: (scope: string, messageId: string) => string;
}

const PRIMARY = 1;
const HOUR = 60 * 60 * 1000;
/** Connected primaries whose `last_seen` one housekeeping pass writes again, at most. */
const REFRESH_PER_PASS = 1000;
const key = (accountId: string, deviceId: number) => `${accountId}|${deviceId}`;
/** What a companion's removal by housekeeping meets when another node or the primary came first. */
const REMOVAL_RACES: ReadonlySet<string> = new Set(["Conflict", "NotFound", "StaleDeviceList"]);

/**
 * The relay's protocol engine, independent of sockets: give it authenticated transports with
 * {@link Relay.handle}. Keeps one live connection per device (a newer one replaces a stale one),
 * wakes delivery when mail arrives, and runs the housekeeping jobs (queue expiry, logging out
 * companions whose primary has been away too long).
 */
export class Relay {
  readonly metrics: ServerMetrics;
  readonly context: RelayContext;
  private readonly sessions = new Set<Session>();
  private readonly byDevice = new Map<string, Session>();
  private readonly unwatch = new Map<Session, () => void>();
  private bindCounter = 0;
  private readonly provisioningRefs = new Map<string, () => void>();
  private readonly inFlight = new Set<Promise<void>>();
  /** Writes of `last_seen` under way (see {@link Relay.touch}). */
  private readonly touching = new Set<Promise<void>>();
  private readonly housekeeping: NodeJS.Timeout;
  private accepting = true;

  constructor(private readonly options: RelayOptions) {
    const now = options.now ?? Date.now;
    this.metrics = createServerMetrics(() => options.store.queueDepth());
    const byDevice = this.byDevice;
    const bus = options.bus;
    this.context = {
      store: options.store,
      config: options.config,
      logger: options.logger,
      metrics: this.metrics,
      now,
      blobs: options.blobs ?? new DiskBlobStorage(options.blobDir, options.config.maxBlobBytes),
      provisioning: new ProvisioningChannels(
        now,
        bus && {
          issued: (ref) => {
            this.provisioningRefs.set(
              ref,
              bus.serveProvisioning(ref, (envelope) =>
                this.context.provisioning.deliver(ref, envelope),
              ),
            );
          },
          retired: (ref) => {
            this.provisioningRefs.get(ref)?.();
            this.provisioningRefs.delete(ref);
          },
        },
      ),
      ...(bus ? { provisionRemote: (ref, envelope) => bus.provision(ref, envelope) } : {}),
      bundleLimiter: new RateLimiter(
        options.config.bundleFetchesPerMinute,
        options.config.bundleFetchesPerMinute,
        now,
      ),
      ...(bus ? { pollMs: options.config.clusterPollMs } : {}),
      submissionKey: options.submissionKey,
      notify(accountId, deviceId, mail) {
        byDevice.get(key(accountId, deviceId))?.notify(mail);
        bus?.mail(accountId, deviceId);
      },
      disconnect(accountId, deviceId) {
        const s = byDevice.get(key(accountId, deviceId));
        if (s) void s.removed();
        bus?.removed(accountId, deviceId);
      },
      prekeysLow(accountId, deviceId, counts) {
        const s = byDevice.get(key(accountId, deviceId));
        s?.pushFrame(
          encodePush({
            kind: {
              case: "prekeysLow",
              value: { prekeys: counts.preKeys, kyberPrekeys: counts.kyberPreKeys },
            },
          }),
        );
      },
    };
    this.housekeeping = setInterval(() => void this.runHousekeeping(), 60_000);
    this.housekeeping.unref();
  }

  /** Serves one authenticated connection until it closes. */
  handle(transport: SecureTransport): Promise<void> {
    if (!this.accepting) return transport.close("server shutting down");
    const session = new Session(this.context, transport, {
      bind: (s, device) => this.bind(s, device),
      unbind: (s) => this.unbind(s),
    });
    this.sessions.add(session);
    const done = session.run().finally(() => {
      this.sessions.delete(session);
      this.inFlight.delete(done);
    });
    this.inFlight.add(done);
    return done;
  }

  private bind(session: Session, device: DeviceRecord): void {
    const k = key(device.accountId, device.deviceId);
    const previous = this.byDevice.get(k);
    this.byDevice.set(k, session);
    this.metrics.connections.set(this.byDevice.size);
    // One live connection per device: the newer one wins, the stale one is closed — here, and
    // through the bus on every other node (the newest binding stamp wins everywhere).
    if (previous && previous !== session) void previous.close("replaced by a newer connection");
    const bus = this.options.bus;
    if (bus) {
      const stamp = makeStamp(bus.nodeId, ++this.bindCounter, this.context.now());
      session.bindStamp = stamp;
      this.unwatch.set(
        session,
        bus.watch(device.accountId, device.deviceId, {
          mail: () => session.notify(),
          removed: () => void session.removed(),
          bound: (other) => {
            if (newerStamp(other, stamp)) void session.close("replaced by a newer connection");
            else bus.bound(device.accountId, device.deviceId, stamp);
          },
        }),
      );
      bus.bound(device.accountId, device.deviceId, stamp);
    }
    void this.touch(device.accountId, device.deviceId, session);
  }

  private unbind(session: Session): void {
    const device = session.device;
    if (!device) return;
    const k = key(device.accountId, device.deviceId);
    if (this.byDevice.get(k) === session) this.byDevice.delete(k);
    this.unwatch.get(session)?.();
    this.unwatch.delete(session);
    this.metrics.connections.set(this.byDevice.size);
    void this.touch(device.accountId, device.deviceId);
  }

  /**
   * Writes a device's `last_seen` (on connect, on disconnect, and again by housekeeping for a
   * connected primary; `session`, if given, records when). Never rejects: a failed write is
   * forgotten by `session`, so that the next housekeeping pass writes it again. Housekeeping
   * waits for the writes under way before it reads who has been away.
   */
  private touch(accountId: string, deviceId: number, session?: Session): Promise<void> {
    const at = this.context.now();
    if (session) session.touchedAt = at;
    const written = this.options.store.touchDevice(accountId, deviceId, at).then(
      () => undefined,
      () => {
        if (session?.touchedAt === at) session.touchedAt = 0;
      },
    );
    this.touching.add(written);
    void written.finally(() => this.touching.delete(written));
    return written;
  }

  /**
   * Expires old queue entries and logs out companions whose primary has been away too long.
   *
   * A primary is "away" by its stored `last_seen`, which connecting and disconnecting write. So
   * that a primary online for longer than the expiry (or one whose node dies without writing
   * its disconnect) still counts as seen, each pass first writes `last_seen` again for the
   * primaries connected here that were last written a while ago (an eighth of the expiry, at
   * most an hour), at most REFRESH_PER_PASS of them, so that a node's primaries are spread over
   * the passes rather than written all at once an hour after a restart. It then waits for every
   * such write under way (connects and disconnects included) before it reads the stale list.
   * And a companion is kept if its primary is connected here, or was seen since the cutoff
   * when it is removed (the store checks in the removal's transaction: the primary may have
   * connected to another node since the list was read).
   */
  async runHousekeeping(): Promise<void> {
    const now = this.context.now();
    const expiry = this.options.config.companionExpiryMs;
    const cutoff = now - expiry;
    try {
      await this.options.store.expire(now);
      const refreshBefore = now - Math.min(HOUR, expiry / 8);
      let refreshed = 0;
      for (const s of this.byDevice.values()) {
        if (refreshed >= REFRESH_PER_PASS) break;
        const device = s.device;
        if (device?.deviceId !== PRIMARY || s.touchedAt > refreshBefore) continue;
        void this.touch(device.accountId, PRIMARY, s);
        refreshed++;
      }
      await Promise.all([...this.touching]);
      for (const c of await this.options.store.listStaleCompanions(cutoff)) {
        if (this.byDevice.has(key(c.accountId, PRIMARY))) continue;
        const account = await this.options.store.getAccount(c.accountId);
        if (!account) continue;
        // The server cannot sign a new device list (only the primary can); it removes the
        // device's keys and queue, which is what stops delivery, and keeps the list as is. Only
        // if the primary is still unseen since the cutoff, checked in the removal's own
        // transaction: it may have connected to another node since the list was read.
        const removed = await this.options.store
          .removeDevice({
            accountId: c.accountId,
            deviceId: c.deviceId,
            signedDeviceList: account.signedDeviceList,
            timestamp: account.deviceListTimestamp,
            primarySeenBefore: cutoff,
          })
          .then(
            () => true,
            (err: unknown) => {
              // Seen since, the companion already gone (another node's pass), or a list the
              // primary published since the account was read: nothing to do this pass.
              if (ServerError.is(err) && REMOVAL_RACES.has(err.code)) return false;
              throw err;
            },
          );
        if (!removed) continue;
        this.context.disconnect(c.accountId, c.deviceId);
        this.options.logger.info(
          { deviceId: c.deviceId },
          "companion logged out: primary offline too long",
        );
      }
    } catch (err) {
      this.options.logger.warn({ code: (err as { code?: string }).code }, "housekeeping failed");
    }
  }

  /** Number of open connections (authenticated or not). */
  get connectionCount(): number {
    return this.sessions.size;
  }

  /** Stops accepting, closes every connection, waits for in-flight requests to finish. */
  async close(): Promise<void> {
    this.accepting = false;
    clearInterval(this.housekeeping);
    this.context.provisioning.closeAll();
    await Promise.all([...this.sessions].map((s) => s.close("server shutting down")));
    await Promise.allSettled([...this.inFlight]);
    await this.context.blobs.close();
  }
}
