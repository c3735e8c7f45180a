import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/** How often the checkpointer copies the WAL's new pages into the database file. */
const CHECKPOINT_INTERVAL_MS = 100;

// The worker's own code: a second connection to the same file that runs PASSIVE checkpoints
// (which never block the writer) until told to stop. CommonJS, as an eval worker is.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.sqlite);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma("busy_timeout = 5000");
db.pragma("synchronous = " + workerData.synchronous);
const checkpoint = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
let failures = 0;
const timer = setInterval(() => {
  try {
    checkpoint.run();
    failures = 0;
  } catch (err) {
    // Busy or failing: the writer's own autocheckpoint is the fallback; say so once.
    if (failures++ === 0) parentPort.postMessage({ failed: String(err && err.code) });
  }
}, workerData.intervalMs);
parentPort.on("message", () => {
  clearInterval(timer);
  try { checkpoint.run(); } catch {}
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
 * request waiting behind the commit. The writer keeps a high autocheckpoint as a fallback should
 * the worker fall behind or die. `onFailure` hears (once per run of failures) that checkpoints
 * fail.
 */
export function startSqliteCheckpointer(options: {
  path: string;
  synchronous: "NORMAL" | "FULL";
  onFailure?: (code: string) => void;
}): SqliteCheckpointer {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: {
      sqlite: createRequire(import.meta.url).resolve("better-sqlite3"),
      path: options.path,
      synchronous: options.synchronous,
      intervalMs: CHECKPOINT_INTERVAL_MS,
    },
    // A small worker: it holds one connection and a timer.
    resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
  });
  worker.unref();
  worker.on("message", (m: { failed?: string }) => {
    if (m.failed !== undefined) options.onFailure?.(m.failed);
  });
  // A worker that cannot start or dies leaves the writer's autocheckpoint in charge.
  worker.on("error", (err) => options.onFailure?.((err as NodeJS.ErrnoException).code ?? "error"));
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  let stopping: Promise<void> | undefined;
  return {
    stop() {
      stopping ??= (async () => {
        worker.postMessage("stop");
        const timeout = setTimeout(() => void worker.terminate(), 5000);
        await exited;
        clearTimeout(timeout);
      })();
      return stopping;
    },
  };
}
