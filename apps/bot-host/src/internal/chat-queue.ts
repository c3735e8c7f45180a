/**
 * Runs tasks strictly in order per chat and concurrently across chats, at most `limit` at once.
 * Chats take turns (a busy chat goes to the back after each task), so one chat cannot starve
 * the others.
 */
export class ChatQueue {
  private readonly pending = new Map<string, Array<() => Promise<void>>>();
  private readonly ready: string[] = [];
  private running = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  /** Queues `task` for `chat`; resolves or rejects with it. */
  push(chat: string, task: () => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const wrapped = () => task().then(resolve, reject);
      const list = this.pending.get(chat);
      if (list) list.push(wrapped);
      else {
        this.pending.set(chat, [wrapped]);
        this.ready.push(chat);
      }
      this.pump();
    });
  }

  /** Tasks queued or running. */
  get size(): number {
    let n = 0;
    for (const l of this.pending.values()) n += l.length;
    return n;
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private pump(): void {
    while (this.running < this.limit) {
      const chat = this.ready.shift();
      if (chat === undefined) break;
      const task = this.pending.get(chat)?.[0];
      if (!task) continue;
      this.running++;
      void task().finally(() => {
        this.running--;
        const list = this.pending.get(chat);
        list?.shift();
        if (list && list.length > 0) this.ready.push(chat);
        else this.pending.delete(chat);
        if (this.pending.size === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const w of waiters) w();
        }
        this.pump();
      });
    }
  }
}
