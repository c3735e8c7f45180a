import { randomBytes } from "node:crypto";
import { Events, connect, type NatsConnection, type Subscription } from "nats";
import type { Logger } from "pino";
import { ServerError } from "./errors.ts";

/**
 * What one relay node tells the others about a device, over NATS. The queue itself lives in
 * the shared database; the bus only carries wake-ups and connection ownership, so a lost
 * notice costs latency, never a message (delivery also re-reads the queue on a timer).
 *
 * Subjects are per device — `pairwise.dev.<base64url(account id)>.<device id>` — and a node
 * subscribes only to the devices connected to it, so a notice reaches only the node that needs
 * it. Payload: one byte of kind, then for "bound" the binding's stamp (UTF-8).
 */
export interface ClusterBus {
  /** This node's id (random per process). */
  readonly nodeId: string;
  /** Wakes delivery of the device wherever it is connected. */
  mail(accountId: string, deviceId: number): void;
  /** The device was removed: whichever node holds its connection closes it. */
  removed(accountId: string, deviceId: number): void;
  /** This node now holds the device's connection, bound at `stamp` (newest wins everywhere). */
  bound(accountId: string, deviceId: number, stamp: string): void;
  /** Starts hearing about a device connected here; returns the function that stops it. */
  watch(accountId: string, deviceId: number, handlers: DeviceNoticeHandlers): () => void;
  /**
   * Answers provisioning deliveries for a ref held by a companion connected here (the primary
   * approving the link may be connected to another node); returns the function that stops it.
   */
  serveProvisioning(ref: string, deliver: (envelope: Uint8Array) => boolean): () => void;
  /** Hands a provisioning envelope to whichever node holds `ref`; false if none took it. */
  provision(ref: string, envelope: Uint8Array): Promise<boolean>;
  /** Round trip to the NATS server in ms (health and metrics); rejects if disconnected. */
  rttMs(): Promise<number>;
  close(): Promise<void>;
}

/** What a node does when it hears about a device connected to it. */
export interface DeviceNoticeHandlers {
  mail(): void;
  removed(): void;
  bound(stamp: string): void;
}

const KIND_MAIL = 0x6d; // "m"
const KIND_REMOVED = 0x72; // "r"
const KIND_BOUND = 0x62; // "b"

const subject = (accountId: string, deviceId: number) =>
  `pairwise.dev.${Buffer.from(accountId, "utf8").toString("base64url")}.${deviceId}`;

/**
 * A stamp orders two bindings of one device: milliseconds, then a per-node counter and node id to
 * break ties. Compare with {@link newerStamp}.
 */
export function makeStamp(nodeId: string, counter: number, now: number): string {
  return `${now.toString().padStart(15, "0")}.${counter.toString().padStart(12, "0")}.${nodeId}`;
}

/** True if stamp `a` is newer than `b`. */
export function newerStamp(a: string, b: string): boolean {
  return a > b;
}

/** Connects to NATS (`nats://host:port`, several comma-separated) as one relay node. */
export async function connectClusterBus(url: string, logger?: Logger): Promise<ClusterBus> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: url.split(",").map((s) => s.trim().replace(/^nats:\/\//, "")),
      name: "pairwise-server",
      // A node does not hear its own notices: it acts on them locally first.
      noEcho: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    });
  } catch (cause) {
    throw new ServerError("Unavailable", "cannot connect to the NATS bus", { cause });
  }
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === Events.Disconnect || s.type === Events.Reconnect)
        logger?.warn({ event: s.type }, "bus connection changed");
    }
  })().catch(() => undefined);

  const nodeId = randomBytes(6).toString("hex");
  const publish = (accountId: string, deviceId: number, kind: number, extra = "") => {
    if (nc.isClosed()) return;
    const payload = Buffer.concat([Buffer.of(kind), Buffer.from(extra, "utf8")]);
    try {
      nc.publish(subject(accountId, deviceId), payload);
    } catch (err) {
      logger?.warn({ code: (err as { code?: string }).code }, "bus publish failed");
    }
  };
  return {
    nodeId,
    mail: (a, d) => publish(a, d, KIND_MAIL),
    removed: (a, d) => publish(a, d, KIND_REMOVED),
    bound: (a, d, stamp) => publish(a, d, KIND_BOUND, stamp),
    watch(accountId, deviceId, handlers) {
      const sub: Subscription = nc.subscribe(subject(accountId, deviceId), {
        callback: (err, msg) => {
          if (err) return;
          const data = msg.data;
          if (data[0] === KIND_MAIL) handlers.mail();
          else if (data[0] === KIND_REMOVED) handlers.removed();
          else if (data[0] === KIND_BOUND)
            handlers.bound(Buffer.from(data.subarray(1)).toString("utf8"));
        },
      });
      return () => sub.unsubscribe();
    },
    serveProvisioning(ref, deliver) {
      const sub = nc.subscribe(`pairwise.prov.${ref}`, {
        callback: (err, msg) => {
          if (err) return;
          msg.respond(Buffer.of(deliver(msg.data) ? 1 : 0));
        },
      });
      return () => sub.unsubscribe();
    },
    async provision(ref, envelope) {
      try {
        const reply = await nc.request(`pairwise.prov.${ref}`, envelope, { timeout: 3000 });
        return reply.data[0] === 1;
      } catch {
        return false; // no node holds the ref (or none answered in time)
      }
    },
    async rttMs() {
      return nc.rtt();
    },
    async close() {
      if (!nc.isClosed()) await nc.drain().catch(() => nc.close());
    },
  };
}
