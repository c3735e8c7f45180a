import { randomBytes } from "node:crypto";

/** A companion waiting to be linked: where to push its ref rotations and the envelope. */
export interface ProvisioningWaiter {
  pushRef(ref: string, expiresAt: number): void;
  deliver(envelope: Uint8Array): void;
}

/** Ref lifetimes from PROTOCOL.md: 60 s for the first ref, 20 s for each rotation after it. */
export const FIRST_REF_TTL_MS = 60_000;
export const ROTATED_REF_TTL_MS = 20_000;

/**
 * The provisioning channels of companions waiting to be linked. Refs are random, expire, and
 * rotate while the companion waits (each rotation is pushed to it); an expired or unknown ref
 * reaches nobody. Lives in memory: a companion that reconnects opens a new channel.
 */
export class ProvisioningChannels {
  private readonly byRef = new Map<string, { waiter: ProvisioningWaiter; expiresAt: number }>();
  private readonly timers = new Map<ProvisioningWaiter, NodeJS.Timeout>();

  constructor(
    private readonly now: () => number = Date.now,
    /** Told when a ref starts and stops being valid (a cluster node serves it on the bus). */
    private readonly refs?: { issued(ref: string): void; retired(ref: string): void },
  ) {}

  /** Opens (or restarts) a channel for `waiter`; returns its first ref. */
  open(waiter: ProvisioningWaiter): { ref: string; expiresAt: number } {
    this.close(waiter);
    return this.issue(waiter, FIRST_REF_TTL_MS);
  }

  private issue(waiter: ProvisioningWaiter, ttl: number): { ref: string; expiresAt: number } {
    this.retire(waiter);
    const ref = randomBytes(24).toString("base64url");
    const expiresAt = this.now() + ttl;
    this.byRef.set(ref, { waiter, expiresAt });
    this.refs?.issued(ref);
    const timer = setTimeout(() => {
      const next = this.issue(waiter, ROTATED_REF_TTL_MS);
      waiter.pushRef(next.ref, next.expiresAt);
    }, ttl);
    timer.unref();
    this.timers.set(waiter, timer);
    return { ref, expiresAt };
  }

  /** Delivers an envelope to the companion behind `ref`; false if the ref is unknown or expired. */
  deliver(ref: string, envelope: Uint8Array): boolean {
    const entry = this.byRef.get(ref);
    if (!entry || entry.expiresAt < this.now()) return false;
    entry.waiter.deliver(envelope);
    this.close(entry.waiter);
    return true;
  }

  /** Closes a companion's channel (it disconnected or was provisioned). */
  close(waiter: ProvisioningWaiter): void {
    const timer = this.timers.get(waiter);
    if (timer) clearTimeout(timer);
    this.timers.delete(waiter);
    this.retire(waiter);
  }

  private retire(waiter: ProvisioningWaiter): void {
    for (const [ref, entry] of this.byRef)
      if (entry.waiter === waiter) {
        this.byRef.delete(ref);
        this.refs?.retired(ref);
      }
  }

  /** Closes every channel (server shutdown). */
  closeAll(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const ref of this.byRef.keys()) this.refs?.retired(ref);
    this.byRef.clear();
  }
}
