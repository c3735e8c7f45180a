import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/** How often the checkpointer copies the WAL's new pages into the database file. */
const CHECKPOINT_INTERVAL_MS = 100;

/**
 * WAL frames (pages) past which the checkpointer has the log started over. SQLite writes the WAL
 * from its beginning again only when a write transaction begins with every frame already copied
 * back, which under a steady stream of commits never happens: the WAL would grow until the
 * writer's own autocheckpoint fired inside a commit, on the event loop. At 16,000 frames (about
 * 64 MB of 4 KiB pages, under the store's journal_size_limit, so the file is never cut back) the
 * checkpointer instead copies the rest back with the group commit held, and the next commit
 * starts the log over. Each time costs the group commit that moment (the pages written since the
 * last pass are copied and both files synced), hence a large log and few restarts.
 */
export const RESTART_FRAMES = 16_000;

/** How long the writer stays held for a restart at most, should the worker not answer. */
const HOLD_MAX_MS = 5000;

// The worker's own code: a second connection to the same file that runs PASSIVE checkpoints
// (which never block a writer: no write lock, no waiting on readers) until told to stop. When a
// pass leaves the log at RESTART_FRAMES or more (and at a size it has not asked about already: an
// idle log keeps its size until the next commit), it asks the main thread to hold its group
// commit ("restart"), and on "go" runs one more PASSIVE pass, which with no commits coming in
// copies back what is left; the next write transaction then starts the log over (SQLite does so
// when it begins with the whole log copied back). It never takes the write lock, so the main
// connection's other writes are not refused meanwhile. CommonJS, as an eval worker is.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.sqlite);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma("busy_timeout = 5000");
db.pragma("synchronous = " + workerData.synchronous);
const passive = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
let failures = 0;
let waiting = false;
let askedAt = -1;
const failed = (err) => {
  // Busy or failing: the writer's own autocheckpoint is the fallback; say so once.
  if (failures++ === 0) parentPort.postMessage({ failed: String(err && err.code) });
};
const timer = setInterval(() => {
  if (waiting) return;
  try {
    const r = passive.get();
    failures = 0;
    if (r.log >= workerData.restartFrames && r.log !== askedAt) {
      askedAt = r.log;
      waiting = true;
      parentPort.postMessage({ restart: true });
    }
  } catch (err) {
    failed(err);
  }
}, workerData.intervalMs);
parentPort.on("message", (m) => {
  if (m === "go") {
    let complete = false;
    try {
      const r = passive.get();
      askedAt = r.log;
      complete = r.busy === 0 && r.log === r.checkpointed;
    } catch (err) {
      failed(err);
    }
    waiting = false;
    parentPort.postMessage({ restarted: true, complete });
    return;
  }
  clearInterval(timer);
  try { passive.get(); } catch {}
  db.close();
  parentPort.close();
});
`;

/** A running background checkpointer; {@link SqliteCheckpointer.stop} before closing the writer. */
export interface SqliteCheckpointer {
  stop(): Promise<void>;
}

/**
 * Moves WAL checkpoints of the database at `path` off the event loop: a worker thread with its
 * own connection checkpoints every 100 ms. A checkpoint copies pages into the database file
 * and, with synchronous NORMAL or FULL, fsyncs it, which on a slow disk stalls for milliseconds;
 * run inline by the committing connection (SQLite's autocheckpoint) that stall lands on every
 * request waiting behind the commit. The worker also has the log started over once it holds
 * RESTART_FRAMES: `holdWrites` is called to stop the group commit (it returns the release, called
 * when the worker's pass is done, fails, or takes longer than HOLD_MAX_MS); writes keep queueing
 * on the event loop meanwhile. The writer keeps a high autocheckpoint as a fallback should the
 * worker fall behind or die. `onFailure` hears (once per run of failures) that checkpoints fail.
 */
export function startSqliteCheckpointer(options: {
  path: string;
  synchronous: "NORMAL" | "FULL";
  holdWrites?: () => () => void;
  onFailure?: (code: string) => void;
  /**
   * Hears each hold, with how long it lasted (ms) and whether the log was then all copied back
   * (the next commit starts it over).
   */
  onRestart?: (heldMs: number, complete: boolean) => void;
  /** Frames past which the log is restarted (tests); defaults to RESTART_FRAMES. */
  restartFrames?: number;
}): SqliteCheckpointer {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: {
      sqlite: createRequire(import.meta.url).resolve("better-sqlite3"),
      path: options.path,
      synchronous: options.synchronous,
      intervalMs: CHECKPOINT_INTERVAL_MS,
      // Without a way to hold the group commit, no asking: under steady commits the extra pass
      // would not catch up either.
      restartFrames: options.holdWrites
        ? (options.restartFrames ?? RESTART_FRAMES)
        : Number.POSITIVE_INFINITY,
    },
    // A small worker: it holds one connection and a timer.
    resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
  });
  worker.unref();
  let release: ((complete: boolean) => void) | undefined;
  let holdTimer: NodeJS.Timeout | undefined;
  // Only the worker's answer can say the log was all copied back; every other release (the
  // timer, the worker exiting, stop) is an incomplete one.
  const releaseWrites = (complete = false) => {
    clearTimeout(holdTimer);
    release?.(complete);
    release = undefined;
  };
  worker.on(
    "message",
    (m: { failed?: string; restart?: boolean; restarted?: boolean; complete?: boolean }) => {
      if (m.failed !== undefined) options.onFailure?.(m.failed);
      if (m.restart && options.holdWrites && !stopping) {
        releaseWrites();
        const releaseHold = options.holdWrites();
        const heldAt = performance.now();
        release = (complete) => {
          releaseHold();
          options.onRestart?.(performance.now() - heldAt, complete);
        };
        holdTimer = setTimeout(releaseWrites, HOLD_MAX_MS);
        holdTimer.unref();
        worker.postMessage("go");
      }
      if (m.restarted) releaseWrites(m.complete === true);
    },
  );
  // A worker that cannot start or dies leaves the writer's autocheckpoint in charge.
  worker.on("error", (err) => options.onFailure?.((err as NodeJS.ErrnoException).code ?? "error"));
  const exited = new Promise<void>((resolve) =>
    worker.once("exit", () => {
      releaseWrites();
      resolve();
    }),
  );
  let stopping: Promise<void> | undefined;
  return {
    stop() {
      stopping ??= (async () => {
        releaseWrites();
        worker.postMessage("stop");
        const timeout = setTimeout(() => void worker.terminate(), 5000);
        await exited;
        clearTimeout(timeout);
      })();
      return stopping;
    },
  };
}
