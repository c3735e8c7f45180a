/**
 * Token buckets per key (e.g. per requesting device): `take` spends tokens, refilled at a steady
 * rate up to `burst`. Old idle buckets are dropped so memory stays bounded.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perMinute: number,
    private readonly burst: number = perMinute,
    private readonly now: () => number = Date.now,
  ) {}

  /** Spends `n` tokens for `key`; false (and nothing spent) when there are not enough. */
  take(key: string, n = 1): boolean {
    const now = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.perMinute) / 60_000);
    b.at = now;
    if (this.buckets.size > 100_000) this.buckets.clear();
    if (b.tokens < n) {
      this.buckets.set(key, b);
      return false;
    }
    b.tokens -= n;
    this.buckets.set(key, b);
    return true;
  }
}
