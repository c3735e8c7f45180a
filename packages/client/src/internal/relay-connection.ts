import { create, toBinary, fromBinary } from "@bufbuild/protobuf";
import {
  ClientFrameSchema,
  ServerFrameSchema,
  type ClientFrame,
  type Push,
  type Response,
} from "@pairwise/core/relay-proto";
import {
  decodeHotServerFrame,
  encodeHotClientFrame,
  type RelayRequestInit,
} from "@pairwise/core/relay-wire";
import type { Transport } from "@pairwise/transport";
import { ClientError } from "./errors.ts";

/** A request: one case of the ClientFrame `request` oneof. */
export type RelayRequest = Exclude<ClientFrame["request"], { case: undefined }>;
/** A response result: one case of the Response `result` oneof. */
export type RelayResult = Response["result"];

/** A request as callers build it (protobuf-es init shape: plain objects, no `$typeName`). */
export type { RelayRequestInit };

/** The value of the result case `C`. */
export type ResultValue<C> =
  Extract<RelayResult, { case: C }> extends { value: infer V } ? V : never;

/** Options of {@link RelayConnection}. */
export interface RelayConnectionOptions {
  /** Gives up on a request that got no answer in this long (default 15 s). */
  timeoutMs?: number;
  /** Called for every server push, in arrival order. */
  onPush?: (push: Push) => void;
  /**
   * Called before every frame is sent; what it throws fails the request unsent. The device uses
   * it to make its stored state durable first (write-ahead: nothing the server or a contact
   * sees ever rests on a state a crash could still undo).
   */
  beforeSend?: () => void;
}

/** A request waiting for its answer. */
interface Waiting {
  resolve: (r: Response) => void;
  reject: (e: unknown) => void;
  /** When it times out (ms, monotonic clock). */
  deadline: number;
}

/**
 * How much later than its deadline a request may time out: the connection's one timer wakes at
 * the earliest deadline but not sooner than this after its previous wake, so requests stuck
 * together time out together.
 */
const TIMEOUT_SLACK_MS = 10;

/**
 * The requests waiting for an answer, by id. Not a `Map`: on a busy connection hundreds are in
 * flight and thousands come and go each second, and a Map that keeps growing and shrinking
 * replaces its hash table each time, the replaced table pointing at its successor. Once one of
 * those tables has been promoted to V8's old generation, it keeps its successor (and the requests
 * in it) alive through every scavenge, so they are promoted in turn, and so on: at 24,000
 * submissions a second the old generation grew by about 2 KB a request and scavenges took 6–16 ms
 * instead of 3–4. An object's integer-keyed dictionary replaces its store without that link.
 */
class WaitingRequests {
  #byId: Record<number, Waiting> = Object.create(null) as Record<number, Waiting>;

  add(id: number, waiting: Waiting): void {
    this.#byId[id] = waiting;
  }

  /** Removes and returns the request with this id, if it is still waiting. */
  take(id: number): Waiting | undefined {
    const waiting = this.#byId[id];
    if (waiting) Reflect.deleteProperty(this.#byId, id);
    return waiting;
  }

  /** Removes and returns every waiting request. */
  takeAll(): Waiting[] {
    const all = Object.values(this.#byId);
    this.#byId = Object.create(null) as Record<number, Waiting>;
    return all;
  }

  /**
   * Removes and returns the requests whose deadline has passed at `now`, and the earliest
   * deadline of those left (undefined if none is left).
   */
  takeExpired(now: number): { expired: Waiting[]; next: number | undefined } {
    const expired: Waiting[] = [];
    let next: number | undefined;
    for (const key in this.#byId) {
      const waiting = this.#byId[key as unknown as number];
      if (!waiting) continue;
      if (waiting.deadline <= now) {
        expired.push(waiting);
        Reflect.deleteProperty(this.#byId, key);
      } else if (next === undefined || waiting.deadline < next) next = waiting.deadline;
    }
    return { expired, next };
  }
}

/**
 * Request/response over one transport to the relay: numbers requests, matches responses by id,
 * times out requests that get no answer, and hands server pushes to `onPush`. A server error
 * becomes `ClientError("ServerRefused")` carrying the server's code (and device mismatches).
 */
export class RelayConnection {
  private nextId = 1;
  private readonly pending = new WaitingRequests();
  private readonly timeoutMs: number;
  /**
   * One timer for all the requests in flight, not one each: it wakes at the earliest deadline
   * (a timer per request was a timer object created and cancelled per message, thousands a
   * second on a busy connection). Armed while requests may be waiting.
   */
  private timer: NodeJS.Timeout | undefined;
  /** Resolves when the connection has ended (the read loop stopped). */
  readonly ended: Promise<void>;

  constructor(
    readonly transport: Transport,
    private readonly options: RelayConnectionOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.ended = this.readLoop();
  }

  private async readLoop(): Promise<void> {
    try {
      for await (const bytes of this.transport) {
        let frame;
        try {
          // Envelope pushes and submit results by hand, anything else by protobuf-es.
          frame = decodeHotServerFrame(bytes) ?? fromBinary(ServerFrameSchema, bytes);
        } catch {
          continue; // a frame we cannot decode is dropped; the request it answers times out
        }
        if (frame.kind.case === "response") {
          this.pending.take(Number(frame.kind.value.id))?.resolve(frame.kind.value);
        } else if (frame.kind.case === "push") {
          this.options.onPush?.(frame.kind.value);
        }
      }
    } catch {
      // the transport failed: pending requests are rejected below
    } finally {
      clearTimeout(this.timer);
      this.timer = undefined;
      for (const p of this.pending.takeAll()) {
        p.reject(new ClientError("Disconnected", "connection to the server closed"));
      }
    }
  }

  /** Arms the timer to wake in `ms` (unless it is armed already). */
  private armTimer(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => this.expire(), ms);
    this.timer.unref();
  }

  /** Times out the requests whose deadline has passed; re-arms for the earliest one left. */
  private expire(): void {
    this.timer = undefined;
    const now = performance.now();
    const { expired, next } = this.pending.takeExpired(now);
    for (const p of expired) {
      p.reject(new ClientError("Timeout", "the server did not answer in time"));
    }
    if (next !== undefined) this.armTimer(Math.max(next - now, TIMEOUT_SLACK_MS));
  }

  /**
   * Sends a request and waits for its answer. Throws `ClientError`: "ServerRefused" (with
   * `serverCode`), "Timeout", "Disconnected", or what `beforeSend` throws.
   */
  async request(request: RelayRequestInit): Promise<RelayResult> {
    this.options.beforeSend?.();
    const id = this.nextId++;
    const deadline = performance.now() + this.timeoutMs;
    const answer = new Promise<Response>((resolve, reject) => {
      this.pending.add(id, { resolve, reject, deadline });
    });
    // Settled by a timeout or a disconnect while the send below still waits (backpressure), it
    // is awaited only after: handled here, so Node does not count it as an unhandled rejection
    // (which ends the process).
    answer.catch(() => undefined);
    this.armTimer(this.timeoutMs);
    try {
      await this.transport.send(encodeClientFrame(BigInt(id), request));
    } catch (cause) {
      this.pending.take(id);
      throw new ClientError("Disconnected", "cannot send to the server", { cause });
    }
    const response = await answer;
    if (response.error) {
      throw new ClientError("ServerRefused", response.error.message, {
        serverCode: response.error.code,
        mismatches: response.error.mismatches.map((m) => ({
          accountId: m.accountId,
          missing: m.missing,
          extra: m.extra,
          stale: m.stale,
        })),
      });
    }
    return response.result;
  }

  /** Sends a frame that needs no answer (acknowledgements). */
  async notify(request: RelayRequestInit): Promise<void> {
    this.options.beforeSend?.();
    await this.transport.send(encodeClientFrame(0n, request));
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    await this.transport.close("client closing");
    await this.ended;
  }
}

/** Narrows a result to the expected case or throws `ClientError("ProtocolError")`. */
export function expectResult<C extends NonNullable<RelayResult["case"]>>(
  result: RelayResult,
  expected: C,
): ResultValue<C> {
  if (result.case !== expected)
    throw new ClientError(
      "ProtocolError",
      `the server answered ${String(result.case)}, expected ${expected}`,
    );
  return result.value as ResultValue<C>;
}

/** ClientFrame bytes: hand-encoded for the per-message requests, protobuf-es for the rest. */
function encodeClientFrame(id: bigint, request: RelayRequestInit): Uint8Array {
  return (
    encodeHotClientFrame(id, request) ??
    toBinary(ClientFrameSchema, create(ClientFrameSchema, { id, request }))
  );
}
