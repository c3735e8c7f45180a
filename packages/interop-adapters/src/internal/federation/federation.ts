import { timingSafeEqual } from "node:crypto";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import type { DeviceMismatchSchema } from "@pairwise/core/relay-proto";
import {
  FedDeliverSchema,
  FedRequestSchema,
  FedResponseSchema,
  type FedAdmission,
  type FedBlob,
  type FedBundles,
  type FedDeliver,
  type FedGroupGet,
  type FedHello,
  type FedLookup,
  type FedRequest,
  type FedResponse,
} from "@pairwise/core/relay-proto";
import {
  noiseInitiator,
  noiseResponder,
  type NoiseKeyPair,
  type SecureTransport,
  type Transport,
} from "@pairwise/transport";
import { websocketConnector } from "@pairwise/transport/websocket";
import {
  CAPABILITY_NAMES,
  Listeners,
  capabilityList,
  defineCapabilities,
  type AdapterCapabilities,
  type CapabilityName,
  type ConnectionState,
  type DeliveryCheckpoint,
  type InteropAdapter,
  type StateChange,
} from "../adapter.ts";
import { InteropError } from "../errors.ts";
import { PAIRWISE_PROTOCOL, checkPartnerProtocol, type DeclaredProtocol } from "./protocol.ts";
import type { FederationStore } from "./store.ts";

/** An allow-listed partner provider. */
export interface FederationPartner {
  /** Its provider name (users there are `name@<this>`). */
  readonly name: string;
  /** Its federation endpoint, `ws://host:port`. */
  readonly url: string;
  /** Its provider key: the Noise static public key it must present (32 bytes). */
  readonly publicKey: Uint8Array;
}

type ResultInit = MessageInitShape<typeof FedResponseSchema>["result"];
type Init<C extends string> =
  Extract<ResultInit, { case: C }> extends { value: infer V } ? V : never;

/**
 * What the relay answers when a partner asks (the accepting side of a link). `partner` is the
 * asking provider, already authenticated and allow-listed. Throw an error with a `code` (e.g.
 * the relay's `ServerError`) to refuse: its code and fixed message cross the link.
 */
export interface FederationHandler {
  fetchDevices(partner: string, req: FedLookup): Promise<Init<"devices">>;
  fetchPrekeyBundles(partner: string, req: FedBundles): Promise<Init<"prekeyBundles">>;
  deliver(partner: string, req: FedDeliver): Promise<Init<"delivered">>;
  blobDownload(partner: string, req: FedBlob): Promise<Init<"blobData">>;
  admission(partner: string, req: FedAdmission): Promise<Init<"admission">>;
  /** A member on `partner` asks for a group this provider hosts (or leaves it). */
  groupGet(partner: string, req: FedGroupGet): Promise<Init<"group">>;
}

/** The minimal logger federation writes to (pino fits). Never given user data. */
export interface FederationLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Options of {@link createFederation}. */
export interface FederationOptions {
  /** This provider's name. */
  provider: string;
  /** This provider's key (Noise static key pair); partners pin its public half. */
  staticKeyPair: NoiseKeyPair;
  partners: readonly FederationPartner[];
  handler: FederationHandler;
  store: FederationStore;
  /** Protocols besides Signal/PQXDH the operator approved, as `"name/version"`. */
  approvedProtocols?: readonly string[];
  /** What this provider declares (tests declare a weaker one); default {@link PAIRWISE_PROTOCOL}. */
  declare?: DeclaredProtocol;
  /** What this provider carries; default everything Pairwise carries but stickers and timers. */
  capabilities?: AdapterCapabilities;
  logger?: FederationLogger;
  /** Sees every frame on every link after Noise decryption (audits, tests). */
  onFrame?: (frame: { partner: string; direction: "in" | "out"; bytes: Uint8Array }) => void;
  now?: () => number;
  /** A request with no answer fails after this long (default 15 000 ms). */
  requestTimeoutMs?: number;
  /** Outbox retry backoff bounds (default 100 .. 5 000 ms). */
  retryMs?: { min: number; max: number };
}

/** Request cases a relay sends over a link (everything but the handshake). */
export type FederationRequest = Exclude<
  MessageInitShape<typeof FedRequestSchema>["request"],
  { case: "hello" } | { case: undefined } | undefined
>;

const DEFAULT_CAPABILITIES = defineCapabilities(true, [
  "text",
  "photos",
  "videos",
  "voiceNotes",
  "files",
  "replies",
  "groups",
]);

const noop = () => undefined;

function keysEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code : "Internal";
}

/** The message of a coded error without its "Code: " prefix (fixed text by contract). */
function messageOf(err: unknown): string {
  const code = codeOf(err);
  const m = err instanceof Error ? err.message : "internal error";
  return code !== "Internal" && m.startsWith(`${code}: `) ? m.slice(code.length + 2) : m;
}

interface Pending {
  resolve(r: FedResponse): void;
  reject(e: unknown): void;
  timer: NodeJS.Timeout;
}

/** One outbound link to a partner: connects on demand, one request stream, answers by id. */
class PartnerLink {
  state: ConnectionState = "backing-off";
  capabilities: AdapterCapabilities | undefined;
  private transport: SecureTransport | undefined;
  private connecting: Promise<SecureTransport> | undefined;
  private readonly pending = new Map<bigint, Pending>();
  private nextId = 1n;
  private flushing: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private backoff: number;
  private closed = false;

  constructor(
    private readonly fed: Federation,
    readonly partner: FederationPartner,
  ) {
    this.backoff = fed.retryMs.min;
  }

  private setState(state: ConnectionState, reason?: string): void {
    if (this.state === state) return;
    this.state = state;
    this.fed.emitState({ remote: this.partner.name, state, ...(reason ? { reason } : {}) });
  }

  async connect(): Promise<SecureTransport> {
    if (this.closed) throw new InteropError("Closed", "federation is closed");
    if (this.transport) return this.transport;
    this.connecting ??= this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async open(): Promise<SecureTransport> {
    this.setState("connecting");
    const o = this.fed.options;
    let secure: SecureTransport;
    try {
      const raw = await websocketConnector({
        url: this.partner.url,
        pingIntervalMs: 10_000,
        connectTimeoutMs: this.fed.options.requestTimeoutMs ?? 15_000,
        ciphertextOnly: true,
      })();
      secure = await noiseInitiator(raw, {
        staticKeyPair: o.staticKeyPair,
        serverPublicKey: this.partner.publicKey,
      });
    } catch (cause) {
      this.setState("backing-off", "unreachable");
      throw new InteropError("PartnerUnavailable", `partner ${this.partner.name} is unreachable`, {
        cause,
      });
    }
    const frames = secure[Symbol.asyncIterator]();
    try {
      await this.fed.sendFrame(this.partner.name, secure, FedRequestSchema, {
        id: 0n,
        request: { case: "hello", value: this.fed.hello() },
      });
      const first = await frames.next();
      if (first.done === true) throw new InteropError("PartnerUnavailable", "link closed");
      this.fed.observe(this.partner.name, "in", first.value);
      const answer = fromBinary(FedResponseSchema, first.value);
      if (answer.error) {
        const refused = answer.error.code === "WeakProtocol" || answer.error.code === "NotAllowed";
        this.setState(refused ? "refused" : "backing-off", answer.error.code);
        throw new InteropError(
          refused ? (answer.error.code as "WeakProtocol") : "PartnerRefused",
          answer.error.message,
          { remoteCode: answer.error.code },
        );
      }
      if (answer.result.case !== "hello")
        throw new InteropError("MalformedFrame", "partner did not answer the handshake");
      this.checkHello(answer.result.value);
    } catch (err) {
      await secure.close("handshake failed");
      if (!InteropError.is(err)) {
        this.setState("backing-off", "handshake");
        throw new InteropError(
          "PartnerUnavailable",
          `partner ${this.partner.name} failed the handshake`,
          {
            cause: err,
          },
        );
      }
      throw err;
    }
    this.transport = secure;
    this.backoff = this.fed.retryMs.min;
    this.setState("connected");
    void this.readLoop(secure, frames);
    void this.flush();
    return secure;
  }

  private checkHello(hello: FedHello): void {
    if (hello.provider !== this.partner.name) {
      this.setState("refused", "NotAllowed");
      throw new InteropError(
        "NotAllowed",
        `partner at ${this.partner.name}'s key names another provider`,
      );
    }
    try {
      checkPartnerProtocol(
        hello.provider,
        { name: hello.protocol, version: hello.protocolVersion },
        this.fed.options.approvedProtocols,
      );
    } catch (err) {
      this.setState("refused", "WeakProtocol");
      throw err;
    }
    this.capabilities = defineCapabilities(
      true,
      hello.capabilities.filter((c): c is CapabilityName =>
        (CAPABILITY_NAMES as readonly string[]).includes(c),
      ),
    );
  }

  private async readLoop(
    secure: SecureTransport,
    frames: AsyncIterator<Uint8Array>,
  ): Promise<void> {
    try {
      for (;;) {
        const next = await frames.next();
        if (next.done === true) break;
        this.fed.observe(this.partner.name, "in", next.value);
        let r: FedResponse;
        try {
          r = fromBinary(FedResponseSchema, next.value);
        } catch {
          break;
        }
        const p = this.pending.get(r.id);
        if (!p) continue;
        this.pending.delete(r.id);
        clearTimeout(p.timer);
        p.resolve(r);
      }
    } catch {
      // The link failed: everything pending fails below and is retried by its owner.
    }
    if (this.transport === secure) this.transport = undefined;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(new InteropError("PartnerUnavailable", `link to ${this.partner.name} closed`));
    }
    if (!this.closed) {
      this.setState("backing-off", "link closed");
      this.scheduleFlush();
    }
  }

  /** Sends one request and waits for its answer. Throws `InteropError`. */
  async request(req: FederationRequest): Promise<FedResponse["result"]> {
    const secure = await this.connect();
    const id = this.nextId++;
    const answer = new Promise<FedResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new InteropError("PartnerUnavailable", `partner ${this.partner.name} did not answer`),
        );
      }, this.fed.options.requestTimeoutMs ?? 15_000);
      timer.unref();
      this.pending.set(id, { resolve, reject, timer });
    });
    try {
      await this.fed.sendFrame(this.partner.name, secure, FedRequestSchema, { id, request: req });
    } catch (cause) {
      const p = this.pending.get(id);
      if (p) clearTimeout(p.timer);
      this.pending.delete(id);
      void answer.catch(noop);
      throw new InteropError("PartnerUnavailable", `link to ${this.partner.name} failed`, {
        cause,
      });
    }
    const r = await answer;
    if (r.error)
      throw new InteropError("PartnerRefused", r.error.message, {
        remoteCode: r.error.code,
        mismatches: r.error.mismatches.map((m) => ({
          accountId: m.accountId,
          missing: [...m.missing],
          extra: [...m.extra],
          stale: [...m.stale],
        })),
      });
    return r.result;
  }

  scheduleFlush(): void {
    if (this.closed || this.retryTimer) return;
    if (this.fed.options.store.countOutbound(this.partner.name) === 0) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.flush();
    }, this.backoff);
    this.retryTimer.unref();
    this.backoff = Math.min(this.backoff * 2, this.fed.retryMs.max);
  }

  /** Delivers the durable outbox in order; stops at the first unreachable moment and retries. */
  flush(): Promise<void> {
    this.flushing ??= this.drain().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async drain(): Promise<void> {
    const store = this.fed.options.store;
    for (let rounds = 0; rounds < 10_000 && !this.closed; rounds++) {
      const batch = store.listOutbound(this.partner.name, 64);
      if (batch.length === 0) return;
      for (const item of batch) {
        const deliver = fromBinary(FedDeliverSchema, item.body);
        try {
          const r = await this.request({ case: "deliver", value: deliver });
          store.removeOutbound(item.seq);
          this.fed.checkpoint(
            deliver.messageId,
            this.partner.name,
            "delivered",
            r.case === "delivered" && r.value.duplicate ? "duplicate" : undefined,
          );
        } catch (err) {
          if (InteropError.is(err, "PartnerRefused")) {
            // Refused for good (the user turned interop off, the account is gone): say so.
            store.removeOutbound(item.seq);
            this.fed.checkpoint(
              deliver.messageId,
              this.partner.name,
              "failed",
              err.remoteCode ?? "refused",
            );
            continue;
          }
          this.scheduleFlush();
          return;
        }
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.setState("stopped");
    await this.transport?.close("federation stopped");
    await this.flushing?.catch(noop);
  }
}

/**
 * Federation with allow-listed partner providers: a mutually authenticated link to each
 * (Noise XX with provider keys, over WebSocket), a handshake in which each side declares its
 * end-to-end protocol and capabilities (a weaker protocol is refused with `WeakProtocol`), request
 * and answer for discovery, device lists, prekey bundles, ciphertext delivery and media, and a
 * durable outbound queue per partner so a partner that was down gets everything once it returns.
 * Plaintext never crosses a link: the relay hands it only ciphertexts and public key material.
 */
export class Federation implements InteropAdapter {
  readonly remote: string;
  readonly capabilities: AdapterCapabilities;
  readonly retryMs: { min: number; max: number };
  private readonly links = new Map<string, PartnerLink>();
  private readonly stateListeners = new Listeners<StateChange>();
  private readonly checkpointListeners = new Listeners<DeliveryCheckpoint>();
  private readonly inbound = new Set<SecureTransport>();
  private stopped = false;

  constructor(readonly options: FederationOptions) {
    this.remote = options.partners.map((p) => p.name).join(",");
    this.capabilities = options.capabilities ?? DEFAULT_CAPABILITIES;
    this.retryMs = options.retryMs ?? { min: 100, max: 5_000 };
    for (const p of options.partners) {
      if (p.publicKey.length !== 32)
        throw new InteropError(
          "InvalidArgument",
          `partner ${p.name}: provider key must be 32 bytes`,
        );
      this.links.set(p.name, new PartnerLink(this, p));
    }
  }

  get state(): ConnectionState {
    if (this.stopped) return "stopped";
    const states = [...this.links.values()].map((l) => l.state);
    return states.every((s) => s === "connected") ? "connected" : "backing-off";
  }

  /** Partner names. */
  get partnerNames(): string[] {
    return [...this.links.keys()];
  }

  /** True when `name` is an allow-listed partner. */
  isPartner(name: string): boolean {
    return this.links.has(name);
  }

  /** The state of the link to one partner. */
  partnerState(name: string): ConnectionState | undefined {
    return this.links.get(name)?.state;
  }

  /** The capabilities a partner declared in its last handshake (undefined before one). */
  partnerCapabilities(name: string): AdapterCapabilities | undefined {
    return this.links.get(name)?.capabilities;
  }

  /** Starts delivering whatever the outbox holds for each partner. */
  start(): Promise<void> {
    for (const l of this.links.values()) l.scheduleFlush();
    return Promise.resolve();
  }

  stop(): Promise<void> {
    return this.close();
  }

  onState(listener: (change: StateChange) => void): () => void {
    return this.stateListeners.add(listener);
  }

  onCheckpoint(listener: (checkpoint: DeliveryCheckpoint) => void): () => void {
    return this.checkpointListeners.add(listener);
  }

  /** @internal */
  emitState(change: StateChange): void {
    this.options.logger?.info(
      { partner: change.remote, state: change.state, reason: change.reason },
      "federation link state",
    );
    this.stateListeners.emit(change);
  }

  /** @internal */
  checkpoint(
    messageId: string,
    remote: string,
    step: DeliveryCheckpoint["step"],
    reason?: string,
  ): void {
    this.checkpointListeners.emit({
      messageId,
      remote,
      step,
      ...(reason ? { reason } : {}),
      at: (this.options.now ?? Date.now)(),
    });
  }

  /** @internal */
  hello(): { provider: string; protocol: string; protocolVersion: number; capabilities: string[] } {
    const declared = this.options.declare ?? PAIRWISE_PROTOCOL;
    return {
      provider: this.options.provider,
      protocol: declared.name,
      protocolVersion: declared.version,
      capabilities: capabilityList(this.capabilities),
    };
  }

  /** @internal */
  observe(partner: string, direction: "in" | "out", bytes: Uint8Array): void {
    this.options.onFrame?.({ partner, direction, bytes });
  }

  /** @internal */
  async sendFrame<S extends typeof FedRequestSchema | typeof FedResponseSchema>(
    partner: string,
    transport: Transport,
    schema: S,
    init: MessageInitShape<S>,
  ): Promise<void> {
    const bytes = toBinary(schema, create(schema, init));
    this.observe(partner, "out", bytes);
    await transport.send(bytes);
  }

  /**
   * Sends a request to a partner and returns its result. Throws `InteropError`:
   * "InvalidArgument" (not a partner), "PartnerUnavailable", "PartnerRefused" (with
   * `remoteCode`), "WeakProtocol"/"NotAllowed" (the handshake was refused).
   */
  request(partner: string, req: FederationRequest): Promise<FedResponse["result"]> {
    const link = this.links.get(partner);
    if (!link) return Promise.reject(new InteropError("InvalidArgument", "not a partner provider"));
    return link.request(req);
  }

  /**
   * Hands ciphertexts to a partner: delivered now when the partner answers (its refusal, e.g. a
   * device mismatch, is thrown as `PartnerRefused`), otherwise queued durably and retried until
   * it answers ("queued"). Idempotent: the partner deduplicates by sender and message id.
   */
  async deliver(
    partner: string,
    deliver: MessageInitShape<typeof FedDeliverSchema>,
  ): Promise<"delivered" | "queued"> {
    const link = this.links.get(partner);
    if (!link) throw new InteropError("InvalidArgument", "not a partner provider");
    const messageId = deliver.messageId ?? "";
    if (this.options.store.countOutbound(partner) === 0) {
      try {
        await link.request({ case: "deliver", value: deliver });
        this.checkpoint(messageId, partner, "delivered");
        return "delivered";
      } catch (err) {
        if (!InteropError.is(err, "PartnerUnavailable")) {
          this.checkpoint(
            messageId,
            partner,
            "failed",
            InteropError.is(err) ? (err.remoteCode ?? err.code) : "error",
          );
          throw err;
        }
      }
    }
    // Down (or others wait before it: keep the order): queue durably, retry in the background.
    const bytes = toBinary(
      FedDeliverSchema,
      create(FedDeliverSchema, { ...deliver, lenient: true }),
    );
    this.options.store.enqueueOutbound(partner, bytes, (this.options.now ?? Date.now)());
    this.checkpoint(messageId, partner, "queued");
    link.scheduleFlush();
    void link.flush();
    return "queued";
  }

  /**
   * Opens the link to a partner now (its handshake tells what it carries) unless it is open.
   * Throws what a request would: `PartnerUnavailable`, `WeakProtocol`, `NotAllowed`, …
   */
  async connect(partner: string): Promise<void> {
    const link = this.links.get(partner);
    if (!link) throw new InteropError("InvalidArgument", "not a partner provider");
    await link.connect();
  }

  /** Messages waiting in the outbox for a partner. */
  queued(partner: string): number {
    return this.options.store.countOutbound(partner);
  }

  /**
   * Serves one inbound link (a raw transport from the federation listener): Noise XX as
   * responder, the initiator's static key must be an allow-listed partner's, then the handshake
   * (its provider name must match that key, its protocol must be strong enough), then requests
   * one at a time in order until it closes.
   */
  async accept(raw: Transport): Promise<void> {
    if (this.stopped) {
      await raw.close("federation stopped");
      return;
    }
    let secure: SecureTransport;
    try {
      secure = await noiseResponder(raw, { staticKeyPair: this.options.staticKeyPair });
    } catch {
      return; // a failed handshake already closed the transport
    }
    const partner = this.options.partners.find((p) =>
      keysEqual(p.publicKey, secure.remoteStaticKey),
    );
    const name = partner?.name ?? "unknown";
    this.inbound.add(secure);
    try {
      const frames = secure[Symbol.asyncIterator]();
      const first = await frames.next();
      if (first.done === true) return;
      this.observe(name, "in", first.value);
      const hello = fromBinary(FedRequestSchema, first.value);
      const refuse = async (code: string, message: string) => {
        this.options.logger?.warn({ partner: name, code }, "federation link refused");
        await this.sendFrame(name, secure, FedResponseSchema, {
          id: hello.id,
          error: { code, message },
        });
      };
      if (!partner) {
        await refuse("NotAllowed", "this provider key is not an allow-listed partner");
        return;
      }
      if (hello.request.case !== "hello") {
        await refuse("InvalidRequest", "a link starts with the handshake");
        return;
      }
      if (hello.request.value.provider !== partner.name) {
        await refuse("NotAllowed", "the provider name does not match its key");
        return;
      }
      try {
        checkPartnerProtocol(
          partner.name,
          { name: hello.request.value.protocol, version: hello.request.value.protocolVersion },
          this.options.approvedProtocols,
        );
      } catch (err) {
        await refuse("WeakProtocol", messageOf(err));
        return;
      }
      await this.sendFrame(name, secure, FedResponseSchema, {
        id: hello.id,
        result: { case: "hello", value: this.hello() },
      });
      for (;;) {
        const next = await frames.next();
        if (next.done === true) break;
        this.observe(name, "in", next.value);
        let req: FedRequest;
        try {
          req = fromBinary(FedRequestSchema, next.value);
        } catch {
          await refuse("InvalidRequest", "frame does not decode");
          break;
        }
        const response = await this.answer(partner.name, req);
        await this.sendFrame(name, secure, FedResponseSchema, response);
      }
    } catch {
      // The link failed; the partner reconnects and retries.
    } finally {
      this.inbound.delete(secure);
      await secure.close("done");
    }
  }

  private async answer(
    partner: string,
    req: FedRequest,
  ): Promise<MessageInitShape<typeof FedResponseSchema>> {
    const h = this.options.handler;
    const r = req.request;
    try {
      switch (r.case) {
        case "fetchDevices":
          return {
            id: req.id,
            result: { case: "devices", value: await h.fetchDevices(partner, r.value) },
          };
        case "fetchPrekeyBundles":
          return {
            id: req.id,
            result: { case: "prekeyBundles", value: await h.fetchPrekeyBundles(partner, r.value) },
          };
        case "deliver":
          return {
            id: req.id,
            result: { case: "delivered", value: await h.deliver(partner, r.value) },
          };
        case "blobDownload":
          return {
            id: req.id,
            result: { case: "blobData", value: await h.blobDownload(partner, r.value) },
          };
        case "admission":
          return {
            id: req.id,
            result: { case: "admission", value: await h.admission(partner, r.value) },
          };
        case "groupGet":
          return {
            id: req.id,
            result: { case: "group", value: await h.groupGet(partner, r.value) },
          };
        default:
          return { id: req.id, error: { code: "InvalidRequest", message: "unknown request" } };
      }
    } catch (err) {
      const code = codeOf(err);
      const mismatches = (err as { mismatches?: unknown }).mismatches;
      return {
        id: req.id,
        error: {
          code,
          message: code === "Internal" ? "internal error" : messageOf(err),
          ...(Array.isArray(mismatches)
            ? { mismatches: mismatches as Array<MessageInitShape<typeof DeviceMismatchSchema>> }
            : {}),
        },
      };
    }
  }

  /** Closes every link (outbound and inbound); the outbox stays for the next start. */
  async close(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.links.values()].map((l) => l.close()));
    await Promise.all([...this.inbound].map((t) => t.close("federation stopped")));
  }
}

/** Creates a {@link Federation} (throws `InteropError("InvalidArgument")` for a bad partner). */
export function createFederation(options: FederationOptions): Federation {
  return new Federation(options);
}
