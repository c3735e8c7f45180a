import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ClientFrame, DeviceMismatchSchema } from "@pairwise/core/relay-proto";
import type { SecureTransport } from "@pairwise/transport";
import {
  isPending,
  type QueuedMail,
  type Caller,
  type HandlerOutcome,
  type HandlerResult,
  type RelayContext,
} from "./context.ts";
import { ServerError } from "./errors.ts";
import * as accounts from "./handlers/accounts.ts";
import * as messages from "./handlers/messages.ts";
import * as interop from "./interop.ts";
import type { DeviceRecord } from "./store/server-store.ts";
import { isRemoteId } from "./validate.ts";
import {
  decodeClientFrame,
  encodeEnvelopePush,
  encodePush,
  encodeResponse,
  encodeSubmitResponse,
} from "./wire.ts";

/** Messages pushed per queue read; the next page is read once these are handed to the transport. */
const PAGE = 200;

/** Committed messages held for a caught-up device at most; past it the queue is read instead. */
const MAX_FRESH = 256;

/** Submissions and acks of one connection waiting for their commit at most (then it waits). */
const MAX_PIPELINED = 256;

/** Requests that go on to the next one while their writes wait for the group commit. */
const PIPELINED = new Set<string>(["submitMessage", "submitGroupMessage", "ack"]);

type Request = NonNullable<ClientFrame["request"]>;

/**
 * One device connection: decodes requests, runs them one at a time in arrival order (so a
 * device's requests never race each other), and pushes its queue once it asked for delivery.
 */
export class Session implements Caller {
  device: DeviceRecord | undefined;
  readonly noiseKey: Uint8Array;
  /** In a cluster: when this connection became the device's (see Relay.bind). */
  bindStamp = "";
  /** When the relay last recorded this device as seen (see Relay.runHousekeeping). */
  touchedAt = 0;
  private delivering = false;
  private lastPushed = 0;
  private wake: (() => void) | undefined;
  private mailWaiting = false;
  /**
   * Whether everything queued for the device up to the last queue read has been pushed (that read
   * came back short). From then on committed messages handed over with their bytes go to
   * `fresh` and are pushed from memory, in seq order, without reading them back.
   */
  private caughtUp = false;
  private fresh: QueuedMail[] = [];
  private closed = false;
  /** Pipelined requests not answered yet. */
  private outstanding = 0;
  /** Requests waiting for `outstanding` to drop below their mark (MAX_PIPELINED, or 1: none). */
  private waiters: Array<{ below: number; resolve: () => void }> = [];

  constructor(
    private readonly ctx: RelayContext,
    private readonly transport: SecureTransport,
    private readonly registry: {
      bind(session: Session, device: DeviceRecord): void;
      unbind(session: Session): void;
    },
  ) {
    this.noiseKey = transport.remoteStaticKey;
  }

  readonly waiter = {
    pushRef: (ref: string, expiresAt: number) => {
      this.pushFrame(
        encodePush({
          kind: { case: "provisioningRef", value: { ref, expiresAt: BigInt(expiresAt) } },
        }),
      );
    },
    deliver: (envelope: Uint8Array) => {
      this.pushFrame(encodePush({ kind: { case: "provisioning", value: { envelope } } }));
    },
  };

  authenticate(device: DeviceRecord): void {
    this.device = device;
    this.registry.bind(this, device);
  }

  startDelivery(): void {
    if (this.delivering || !this.device) return;
    this.delivering = true;
    void this.pump();
  }

  private hasMail(): boolean {
    return this.mailWaiting || this.fresh.length > 0;
  }

  /**
   * New mail for this device: wake the delivery loop. With the message itself and the device
   * caught up, it is pushed from memory; otherwise (no bytes, not caught up, too many held) the
   * loop reads the queue, which has it.
   */
  notify(mail?: QueuedMail): void {
    if (mail && this.caughtUp && !this.mailWaiting && this.fresh.length < MAX_FRESH) {
      this.fresh.push(mail);
    } else {
      this.mailWaiting = true;
      this.fresh = [];
    }
    this.wake?.();
  }

  /** Queues a frame to the device, ignoring a closed connection. */
  pushFrame(frame: Uint8Array): void {
    this.transport.send(frame).catch(() => undefined);
  }

  /** Runs the connection until it closes. Authenticates by Noise key if it is registered. */
  async run(): Promise<void> {
    const known = await this.ctx.store.getDeviceByNoiseKey(this.noiseKey);
    if (known) this.authenticate(known);
    try {
      for await (const frame of this.transport) {
        await this.handleFrame(frame);
      }
    } catch {
      // The transport failed (peer vanished, bad frame): the finally block cleans up.
    } finally {
      this.shutdown();
    }
  }

  /** Pushes DeviceRemoved and closes (the device was logged out). */
  async removed(): Promise<void> {
    const deviceId = this.device?.deviceId ?? 0;
    await this.transport
      .send(encodePush({ kind: { case: "deviceRemoved", value: { deviceId } } }))
      .catch(() => undefined);
    await this.transport.close("device removed");
  }

  /** Closes the connection (server shutdown or a newer connection of the same device). */
  async close(reason: string): Promise<void> {
    await this.transport.close(reason);
  }

  private shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    this.delivering = false;
    this.wake?.();
    this.ctx.provisioning.close(this.waiter);
    this.registry.unbind(this);
  }

  private async handleFrame(bytes: Uint8Array): Promise<void> {
    let frame: ClientFrame;
    try {
      frame = decodeClientFrame(bytes);
    } catch (err) {
      this.ctx.metrics.errors.inc({ code: "InvalidRequest" });
      await this.respond(0n, undefined, err);
      return;
    }
    const request = frame.request;
    if (!request.case) {
      await this.respond(frame.id, undefined, new ServerError("InvalidRequest", "empty request"));
      return;
    }
    this.ctx.metrics.requests.inc(request.case);
    // Submissions and acks are pipelined: each is validated and handed to the store in arrival
    // order, and the next request starts while the store gathers them into one commit. Anything
    // else first waits for those to be answered, so a device's requests never race.
    // A pipelined request past MAX_PIPELINED waits for the oldest to be answered (the pipeline
    // stays full), anything else for all of them.
    const below = PIPELINED.has(request.case) ? MAX_PIPELINED : 1;
    if (this.outstanding >= below) {
      await new Promise<void>((resolve) => this.waiters.push({ below, resolve }));
    }
    try {
      const outcome = await this.dispatch(request);
      if (isPending(outcome)) this.answerLater(frame.id, outcome.pending);
      else if (frame.id !== 0n) await this.respond(frame.id, outcome);
    } catch (err) {
      await this.respond(frame.id, undefined, err);
    }
  }

  private answerLater(id: bigint, pending: Promise<HandlerResult>): void {
    this.outstanding++;
    void pending
      .then(
        (result) => (id !== 0n ? this.respond(id, result) : undefined),
        (err: unknown) => this.respond(id, undefined, err),
      )
      .finally(() => {
        this.outstanding--;
        if (this.waiters.length > 0) this.releaseWaiters();
      });
  }

  private releaseWaiters(): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) {
      if (this.outstanding < w.below) w.resolve();
      else this.waiters.push(w);
    }
  }

  private async respond(
    id: bigint,
    result: HandlerResult | undefined,
    err?: unknown,
  ): Promise<void> {
    if (err !== undefined) {
      const e = ServerError.is(err) ? err : new ServerError("Internal", "internal error");
      if (!ServerError.is(err))
        this.ctx.logger.error({ err: (err as Error).name }, "request failed unexpectedly");
      this.ctx.metrics.errors.inc({ code: e.code });
      const mismatches =
        (err as { mismatches?: Array<MessageInitShape<typeof DeviceMismatchSchema>> }).mismatches ??
        [];
      await this.transport
        .send(
          encodeResponse({
            id,
            error: { code: e.code, message: e.message, mismatches },
            result: { case: undefined },
          }),
        )
        .catch(() => undefined);
      return;
    }
    const frame =
      result?.case === "submit"
        ? encodeSubmitResponse(
            id,
            Number(result.value.serverTimestamp ?? 0n),
            result.value.duplicate ?? false,
          )
        : encodeResponse({ id, result: result ?? { case: "empty", value: {} } });
    await this.transport.send(frame).catch(() => undefined);
  }

  private dispatch(r: Request): Promise<HandlerOutcome> {
    const ctx = this.ctx;
    switch (r.case) {
      case "register":
        return accounts.register(ctx, this, r.value);
      case "registerCompanion":
        return accounts.registerCompanion(ctx, this, r.value);
      case "uploadKeys":
        return accounts.uploadKeys(ctx, this, r.value);
      case "getPrekeyCount":
        return accounts.prekeyCount(ctx, this);
      case "publishDeviceList":
        return accounts.publishDeviceList(ctx, this, r.value);
      case "allocateCompanion":
        return accounts.allocateCompanion(ctx, this);
      case "provisionCompanion":
        return accounts.provisionCompanion(ctx, this, r.value);
      case "removeDevice":
        return accounts.removeDevice(ctx, this, r.value);
      case "deleteAccount":
        return accounts.deleteAccount(ctx, this);
      case "listOwnDevices":
        return accounts.listOwnDevices(ctx, this);
      case "provisioningOpen": {
        if (this.device)
          throw new ServerError("InvalidRequest", "a registered device cannot be provisioned");
        const opened = ctx.provisioning.open(this.waiter);
        return Promise.resolve({
          case: "provisioningRef",
          value: { ref: opened.ref, expiresAt: BigInt(opened.expiresAt) },
        });
      }
      case "fetchDevices":
        return isRemoteId(r.value.accountId)
          ? interop.fetchRemoteDevices(ctx, this, r.value)
          : messages.fetchDevices(ctx, this, r.value);
      case "fetchPrekeyBundles":
        return isRemoteId(r.value.accountId)
          ? interop.fetchRemoteBundles(ctx, this, r.value)
          : messages.fetchPrekeyBundles(ctx, this, r.value);
      case "submitMessage":
        return r.value.federated
          ? interop.submitFederated(ctx, this, r.value)
          : messages.submitMessage(ctx, this, r.value);
      case "ack":
        return messages.ack(ctx, this, r.value);
      case "groupCreate":
        return r.value.members.some(isRemoteId)
          ? interop.groupCreateFederated(ctx, this, r.value)
          : messages.groupCreate(ctx, this, r.value);
      case "groupUpdate":
        return interop.groupUpdate(ctx, this, r.value);
      case "groupGet":
        return interop.groupGet(ctx, this, r.value);
      case "submitGroupMessage":
        return r.value.federated
          ? interop.submitGroupFederated(ctx, this, r.value)
          : messages.submitGroupMessage(ctx, this, r.value);
      case "blobUpload":
        return messages.blobUpload(ctx, this, r.value);
      case "blobDownload":
        return r.value.provider
          ? interop.downloadRemoteBlob(ctx, this, r.value)
          : messages.blobDownload(ctx, this, r.value);
      case "interopGet":
        return interop.interopGet(ctx, this);
      case "interopSet":
        return interop.interopSet(ctx, this, r.value);
      case "startDelivery":
        accounts.requireDevice(this);
        this.startDelivery();
        return Promise.resolve(undefined);
      case "ping":
        return Promise.resolve(undefined);
      default:
        return Promise.reject(new ServerError("InvalidRequest", "unknown request"));
    }
  }

  /**
   * Delivery: pushes everything queued (then QueueEmpty), then new mail as it arrives. Each send
   * waits for transport backpressure. Unacknowledged messages stay queued and are pushed again
   * on the device's next connection.
   */
  private isDelivering(): boolean {
    return this.delivering;
  }

  private async pump(): Promise<void> {
    const device = this.device;
    if (!device) return;
    let announcedEmpty = false;
    while (this.isDelivering()) {
      if (!this.mailWaiting && this.fresh.length > 0) {
        // Committed after the last queue read came back short, in commit (seq) order.
        const batch = this.fresh;
        this.fresh = [];
        for (const m of batch) {
          if (m.seq <= this.lastPushed) continue;
          if (!this.isDelivering()) return;
          await this.pushEnvelope(m.seq, m.envelope);
        }
        if (!this.hasMail() && this.isDelivering()) await this.idle();
        continue;
      }
      this.mailWaiting = false;
      this.caughtUp = false;
      this.fresh = [];
      let page;
      this.ctx.metrics.queueReads.inc();
      try {
        page = await this.ctx.store.fetchQueue(
          device.accountId,
          device.deviceId,
          this.lastPushed,
          PAGE,
          this.ctx.now(),
        );
      } catch (err) {
        this.ctx.logger.error(
          { code: ServerError.is(err) ? err.code : "Internal" },
          "queue read failed",
        );
        await this.close("storage unavailable");
        return;
      }
      for (const m of page) {
        if (!this.isDelivering()) return;
        await this.pushEnvelope(m.seq, m.envelope);
      }
      if (page.length === PAGE) continue;
      // Everything queued before that read is pushed; mail committed since then (or during the
      // pushes) set mailWaiting and is read next time round, later mail can come from memory.
      this.caughtUp = !this.mailWaiting;
      if (!announcedEmpty) {
        announcedEmpty = true;
        this.pushFrame(encodePush({ kind: { case: "queueEmpty", value: {} } }));
      }
      if (!this.hasMail() && this.isDelivering()) await this.idle();
    }
  }

  /** Pushes one queued message (waiting for transport backpressure) and counts it delivered. */
  private async pushEnvelope(seq: number, envelope: Uint8Array): Promise<void> {
    await this.transport.send(encodeEnvelopePush(envelope, seq)).catch(() => undefined);
    this.lastPushed = seq;
    this.ctx.metrics.delivered.inc();
  }

  /** Waits for mail (or shutdown); in a cluster at most `pollMs`, then the queue is read anyway. */
  private async idle(): Promise<void> {
    const pollMs = this.ctx.pollMs;
    let poll: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      // In a cluster a wake-up from another node can be lost: look again now and then.
      if (pollMs !== undefined) {
        poll = setTimeout(() => {
          this.mailWaiting = true;
          resolve();
        }, pollMs).unref();
      }
    });
    clearTimeout(poll);
    this.wake = undefined;
  }
}
