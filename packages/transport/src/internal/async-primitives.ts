/** Small promise helpers the transports share. */

/** A promise with its resolve/reject exposed. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** Creates a {@link Deferred}. */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Runs tasks one after another in submission order. Sends go through one so that frames are
 * written (and Noise nonces used) in the order `send` was called, and so that only one send at a
 * time waits on backpressure.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  /** Runs `task` after every earlier task has settled; settles like `task`. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

/** A level-less notification: `wait()` resolves at the next `notify()`. */
export class ChangeSignal {
  #next = deferred<undefined>();

  /** Resolves at the next {@link ChangeSignal.notify}. */
  wait(): Promise<undefined> {
    return this.#next.promise;
  }

  /** Wakes every current waiter. */
  notify(): void {
    const current = this.#next;
    this.#next = deferred<undefined>();
    current.resolve(undefined);
  }
}
