/** Exponential backoff with optional full jitter ("Exponential Backoff and Jitter", AWS). */
export interface BackoffPolicy {
  /** Delay cap of the first retry (ms). */
  readonly minDelayMs: number;
  /** Largest delay (ms). */
  readonly maxDelayMs: number;
  /** Growth of the cap per consecutive failure. */
  readonly factor: number;
  /** `"full"`: a uniform random delay in [0, cap); `"none"`: exactly the cap. */
  readonly jitter: "full" | "none";
}

/**
 * The delay before retry number `level` (1 = first retry): `cap = min(maxDelayMs, minDelayMs ×
 * factor^(level−1))`, then full jitter `random() × cap` unless jitter is off.
 */
export function backoffDelay(policy: BackoffPolicy, level: number, random: () => number): number {
  const exponent = Math.max(0, level - 1);
  const cap = Math.min(policy.maxDelayMs, policy.minDelayMs * policy.factor ** exponent);
  if (policy.jitter === "none") return cap;
  return Math.floor(Math.min(Math.max(random(), 0), 1) * cap);
}
