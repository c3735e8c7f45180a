/**
 * Serialises async work per key. Two encrypts or decrypts for the same remote device must never
 * interleave — libsignal's store callbacks are async, and an interleaved read-modify-write of one
 * session is what corrupts sessions ("Bad MAC") in other libraries. Work on different keys runs
 * concurrently.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier holder of every key in `keys` has finished. */
  async run<T>(keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    // Sorted and de-duplicated so two multi-key holders always queue in the same order.
    const unique = keys.length === 1 ? (keys as string[]) : [...new Set(keys)].sort();
    const previous: Promise<void>[] = [];
    for (const k of unique) {
      const tail = this.tails.get(k);
      if (tail) previous.push(tail);
    }
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    for (const k of unique) this.tails.set(k, mine);
    try {
      // Uncontended (the usual case): run at once, without waiting a turn of the event loop.
      if (previous.length > 0) await Promise.all(previous);
      return await fn();
    } finally {
      release();
      for (const k of unique) if (this.tails.get(k) === mine) this.tails.delete(k);
    }
  }
}
