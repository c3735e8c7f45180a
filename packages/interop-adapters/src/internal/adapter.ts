/**
 * The adapter contract, modelled on mautrix-style bridge frameworks: a small required core
 * (start, stop, send, a state and checkpoint stream), optional capabilities declared up front so
 * the Pairwise side knows before sending what will arrive, connection states, and a delivery
 * checkpoint per message so nothing is dropped silently.
 */

/** What kinds of content an adapter carries. Anything not declared degrades to a notice. */
export interface AdapterCapabilities {
  /** End-to-end encrypted all the way (federation) or only up to the bridge (Telegram). */
  readonly endToEnd: boolean;
  readonly text: boolean;
  readonly photos: boolean;
  readonly videos: boolean;
  readonly voiceNotes: boolean;
  readonly files: boolean;
  readonly replies: boolean;
  readonly reactions: boolean;
  readonly stickers: boolean;
  readonly disappearingTimers: boolean;
  readonly groups: boolean;
}

/** The capability names, for declaring them on the wire and in configuration. */
export type CapabilityName = Exclude<keyof AdapterCapabilities, "endToEnd">;

/** Every capability name, in a fixed order. */
export const CAPABILITY_NAMES: readonly CapabilityName[] = [
  "text",
  "photos",
  "videos",
  "voiceNotes",
  "files",
  "replies",
  "reactions",
  "stickers",
  "disappearingTimers",
  "groups",
];

/**
 * Builds a capability set: everything not named is off. `endToEnd` must be stated, because it
 * decides whether the Pairwise side shows the "not end-to-end encrypted beyond this bridge" notice.
 */
export function defineCapabilities(
  endToEnd: boolean,
  supported: readonly CapabilityName[],
): AdapterCapabilities {
  const on = new Set(supported);
  const caps = { endToEnd } as Record<keyof AdapterCapabilities, boolean>;
  for (const name of CAPABILITY_NAMES) caps[name] = on.has(name);
  return caps;
}

/** The names of the capabilities that are on (for a handshake). */
export function capabilityList(caps: AdapterCapabilities): CapabilityName[] {
  return CAPABILITY_NAMES.filter((n) => caps[n]);
}

/**
 * A connection's state, as bridges report it: `connecting` while a link or poll starts,
 * `connected` when traffic flows, `backing-off` between retries after a failure, `refused` when
 * the other side turned us down for good (bad credentials, a weaker protocol), `stopped` after
 * {@link InteropAdapter.stop}.
 */
export type ConnectionState = "connecting" | "connected" | "backing-off" | "refused" | "stopped";

/** A connection state change, with a short fixed reason (never user data). */
export interface StateChange {
  readonly remote: string;
  readonly state: ConnectionState;
  readonly reason?: string;
}

/**
 * How far one message got, per message (mautrix "message checkpoints"): `queued` (durably held
 * for a partner that is down), `sent` (the other side accepted it), `delivered` (it reached the
 * far end's queue or chat), `degraded` (content the other side lacks turned into a notice),
 * `failed` (permanently refused, with the reason).
 */
export type CheckpointStep = "queued" | "sent" | "delivered" | "degraded" | "failed";

/** One delivery checkpoint. */
export interface DeliveryCheckpoint {
  readonly messageId: string;
  readonly remote: string;
  readonly step: CheckpointStep;
  readonly reason?: string;
  readonly at: number;
}

/** An outbound message in adapter-neutral form. */
export type AdapterContent =
  | { kind: "text"; text: string; replyTo?: string }
  | {
      kind: "photo" | "video" | "voice" | "file";
      data: Uint8Array;
      fileName: string;
      caption?: string;
      replyTo?: string;
    }
  | { kind: "reaction"; emoji: string; target: string }
  | { kind: "sticker"; data: Uint8Array }
  | { kind: "timer"; seconds: number };

/**
 * The required core every adapter implements. Optional features are declared in
 * `capabilities`, not discovered by trial; what is not declared is turned into a notice by
 * {@link degradeContent} before it reaches `send`.
 */
export interface InteropAdapter {
  /** The remote network's name (a provider name, or "telegram"). */
  readonly remote: string;
  readonly capabilities: AdapterCapabilities;
  readonly state: ConnectionState;
  /** Starts connecting; resolves once started (not necessarily connected). */
  start(): Promise<void>;
  /** Stops; pending work stays durable where the adapter keeps any. */
  stop(): Promise<void>;
  /** Subscribes to state changes; returns the unsubscribe function. */
  onState(listener: (change: StateChange) => void): () => void;
  /** Subscribes to delivery checkpoints; returns the unsubscribe function. */
  onCheckpoint(listener: (checkpoint: DeliveryCheckpoint) => void): () => void;
}

const NOTICE: Record<Exclude<AdapterContent["kind"], "text">, [CapabilityName, string]> = {
  photo: ["photos", "a photo"],
  video: ["videos", "a video"],
  voice: ["voiceNotes", "a voice note"],
  file: ["files", "a file"],
  reaction: ["reactions", "a reaction"],
  sticker: ["stickers", "a sticker"],
  timer: ["disappearingTimers", "a disappearing-messages timer"],
};

/**
 * The content as the other side can take it: unchanged when supported, otherwise a text notice
 * saying what could not be carried (never a silent drop). `degraded` tells the caller to emit a
 * `degraded` checkpoint.
 */
export function degradeContent(
  content: AdapterContent,
  caps: AdapterCapabilities,
  remote: string,
): { content: AdapterContent; degraded: boolean } {
  if (content.kind === "text") return { content, degraded: false };
  const [cap, what] = NOTICE[content.kind];
  if (caps[cap]) {
    if ("replyTo" in content && content.replyTo && !caps.replies) {
      const { replyTo: _dropped, ...rest } = content;
      return { content: rest, degraded: true };
    }
    return { content, degraded: false };
  }
  return {
    content: { kind: "text", text: `[${what} was sent here, but ${remote} does not support it]` },
    degraded: true,
  };
}

/** A small listener set used by adapters for states and checkpoints. */
export class Listeners<T> {
  private readonly set = new Set<(value: T) => void>();

  add(listener: (value: T) => void): () => void {
    this.set.add(listener);
    return () => this.set.delete(listener);
  }

  emit(value: T): void {
    for (const l of this.set) {
      try {
        l(value);
      } catch {
        // A failing listener must not break the adapter.
      }
    }
  }
}
