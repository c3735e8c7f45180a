import {
  BackupError,
  addPasskeySlot,
  backupDevice,
  ensureDeviceKeyring,
  lastBackupSequence,
  listBackups,
  loadDeviceKeyring,
  recoveryKeyOf,
  restoreDevice,
  saveDeviceKeyring,
  type BackupProvider,
} from "@pairwise/backup";
import { createDestinationProvider } from "@pairwise/backup/destinations";
import type { PasskeyWeb } from "@pairwise/backup/passkey-web";
import type { Logger } from "pino";
import { describeError, type Bot } from "./bot.ts";
import type { BotBackupConfig } from "./config.ts";
import { BotHostError } from "./errors.ts";

/** What the dashboard shows of a bot's backups. */
export interface BackupStatus {
  /** The destination as configured. */
  to: string;
  intervalMinutes: number;
  /** A backup is being written now. */
  running: boolean;
  /** When the last successful backup finished, and its sequence number. */
  lastAt?: number;
  lastSequence?: number;
  /** Why the last attempt failed (cleared by a success); never key material. */
  lastError?: string;
  lastErrorAt?: number;
  /** When the next scheduled backup runs (absent until the bot is connected). */
  nextAt?: number;
  /** The bot has a backup key (made by its first backup or passkey enrolment). */
  hasKey: boolean;
  /** Passkey slots in the keyring (each applies to backups made after it was enrolled). */
  passkeys: number;
  /** The last passkey enrolment started from the dashboard. */
  enrolment?: { state: "waiting" | "done" | "failed"; at: number; error?: string };
  /** The last restore started from the dashboard. */
  restore?: {
    state: "waiting" | "done" | "failed";
    at: number;
    error?: string;
    imported?: number;
    sequence?: number;
  };
}

const EXPLAIN: Partial<Record<string, string>> = {
  WrongKey: "this passkey does not unlock the backup; nothing was restored",
  PasskeyFailed:
    "the passkey gave no key (another passkey, a cancelled or timed-out ceremony); nothing was restored",
  Tampered: "the backup has been modified or damaged; nothing was restored",
  RolledBack: "the backup is older than one this bot has already seen; nothing was restored",
  Incomplete: "the backup is incomplete (an upload was cut off); nothing was restored",
  NotFound: "no backup found at the destination",
  ProviderFailure: "the backup storage failed",
  NotConnected: "the bot is not linked yet",
};

/** A failure as the dashboard and logs show it: a fixed sentence per code, never data or keys. */
function explain(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === "string" && EXPLAIN[code]) return EXPLAIN[code];
  if (BackupError.is(err) || BotHostError.is(err)) return err.message;
  return "internal error";
}

/**
 * One bot's backups: a backup shortly after the bot is connected, then one every interval
 * (never two at once; a failure is logged and retried at the next interval), "back up now",
 * passkey enrolment and restore with a passkey through the dashboard's passkey page. Backups,
 * restores and key changes of one bot run one at a time.
 */
export class BotBackups {
  private readonly bot: Bot;
  private readonly config: BotBackupConfig;
  private readonly log: Logger;
  private readonly startDelayMs: number;
  private readonly now: () => number;
  private provider: Promise<BackupProvider> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private readonly status: Omit<BackupStatus, "hasKey" | "passkeys" | "running">;
  private readonly onChange = () => {
    if (this.bot.currentState === "connected" && !this.timer && !this.running)
      this.schedule(this.startDelayMs);
  };

  constructor(init: {
    bot: Bot;
    config: BotBackupConfig;
    logger: Logger;
    /** Delay of the first backup after the bot is connected (default 10 s). */
    startDelayMs?: number;
    now?: () => number;
  }) {
    this.bot = init.bot;
    this.config = init.config;
    this.log = init.logger.child({ bot: init.bot.settings.name, component: "backup" });
    this.startDelayMs = init.startDelayMs ?? 10_000;
    this.now = init.now ?? Date.now;
    this.status = { to: init.config.to, intervalMinutes: init.config.intervalMinutes };
  }

  /** Starts the schedule (it waits for the bot to be connected). */
  start(): void {
    this.bot.on("change", this.onChange);
    this.onChange();
  }

  /** Stops the schedule and waits for a backup in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.bot.off("change", this.onChange);
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** What the dashboard shows. */
  snapshot(): BackupStatus {
    const keyring = this.safeKeyring();
    return {
      ...this.status,
      running: this.running !== undefined,
      hasKey: keyring !== undefined,
      passkeys: keyring?.slots.filter((s) => s.kind === "passkey").length ?? 0,
      ...(this.status.enrolment ? { enrolment: { ...this.status.enrolment } } : {}),
      ...(this.status.restore ? { restore: { ...this.status.restore } } : {}),
    };
  }

  private safeKeyring() {
    const linked = this.bot.linkedDevice();
    try {
      return linked && loadDeviceKeyring(linked.store);
    } catch {
      return undefined;
    }
  }

  private changed(): void {
    this.bot.emit("change");
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.status.nextAt = this.now() + ms;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.bot.currentState !== "connected") {
        // Not connected now: the next connection starts the schedule again.
        delete this.status.nextAt;
        return;
      }
      void this.backupNow()
        .catch(() => undefined)
        .finally(() => {
          this.schedule(this.config.intervalMinutes * 60_000);
        });
    }, ms);
    this.timer.unref();
  }

  /** Runs `work` after every earlier backup, restore or key change of this bot. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private linked() {
    const linked = this.bot.linkedDevice();
    if (!linked) throw new BotHostError("NotConnected", "the bot is not linked yet");
    return linked;
  }

  private providerOf(): Promise<BackupProvider> {
    this.provider ??= createDestinationProvider(this.config.destination).catch((err: unknown) => {
      this.provider = undefined;
      throw err;
    });
    return this.provider;
  }

  /**
   * Backs the bot up now, or joins the backup already running. Resolves with its sequence
   * number; rejects (after logging, without secrets) when it failed.
   */
  backupNow(): Promise<void> {
    this.running ??= this.exclusive(async () => {
      this.changed();
      try {
        const linked = this.linked();
        const provider = await this.providerOf();
        const started = this.now();
        // Numbered after every backup at the destination: after a relink (a new device, a new
        // key) this bot's newest backup is still the one a restore picks.
        const existing = await listBackups({ provider });
        const result = await backupDevice({
          store: linked.store,
          provider,
          after: Math.max(0, ...existing.map((b) => b.sequence)),
          labels: { account: linked.accountId, device: String(linked.deviceId) },
        });
        this.status.lastAt = this.now();
        this.status.lastSequence = result.sequence;
        delete this.status.lastError;
        delete this.status.lastErrorAt;
        this.log.info(
          {
            sequence: result.sequence,
            records: result.manifest.records,
            bytes: result.manifest.ciphertextBytes,
            ms: this.now() - started,
          },
          "backup written",
        );
      } catch (err) {
        this.status.lastError = explain(err);
        this.status.lastErrorAt = this.now();
        this.log.warn({ err: describeError(err) }, "backup failed; retrying at the next interval");
        throw err;
      }
    }).finally(() => {
      this.running = undefined;
      this.changed();
    });
    return this.running;
  }

  /** The bot's recovery key (its keyring is created first if it has none). */
  revealRecoveryKey(): Promise<string> {
    return this.exclusive(() => {
      const { keyring, created } = ensureDeviceKeyring(this.linked().store);
      if (created) this.log.info("backup key created");
      return Promise.resolve(recoveryKeyOf(keyring));
    });
  }

  /**
   * Starts enrolling a passkey on `web` (the keyring is created first if the bot has none);
   * resolves with the passkey page's URL. The slot is added when the ceremony succeeds and
   * applies to backups made afterwards.
   */
  async enrolPasskey(web: PasskeyWeb): Promise<{ url: string; recoveryKeyCreated: boolean }> {
    const { store, created } = await this.exclusive(() => {
      const linked = this.linked();
      return Promise.resolve({ store: linked.store, ...ensureDeviceKeyring(linked.store) });
    });
    const request = web.enrol(`bot ${this.bot.settings.name}`);
    this.status.enrolment = { state: "waiting", at: this.now() };
    this.changed();
    void request.result
      .then((enrolment) =>
        this.exclusive(() => {
          const current = loadDeviceKeyring(store);
          if (!current) throw new BotHostError("NotFound", "the backup key is gone");
          saveDeviceKeyring(store, addPasskeySlot(current, enrolment));
          return Promise.resolve();
        }),
      )
      .then(
        () => {
          this.status.enrolment = { state: "done", at: this.now() };
          this.log.info("backup passkey enrolled");
        },
        (err: unknown) => {
          this.status.enrolment = { state: "failed", at: this.now(), error: explain(err) };
          this.log.warn({ err: describeError(err) }, "backup passkey enrolment failed");
        },
      )
      .finally(() => {
        this.changed();
      });
    return { url: request.url, recoveryKeyCreated: created };
  }

  /**
   * Starts restoring the newest backup into the bot's device store, unlocked with a passkey on
   * `web`: resolves with the passkey page's URL once the backup asks for it, or with the error
   * when it fails before. All or nothing: nothing is written unless every byte verified.
   */
  restoreWithPasskey(web: PasskeyWeb): Promise<{ url?: string; error?: string }> {
    if (this.status.restore?.state === "waiting")
      return Promise.resolve({ error: "a restore is already waiting for its passkey" });
    let askFor: (url: string) => void = () => undefined;
    const asked = new Promise<string>((r) => (askFor = r));
    this.status.restore = { state: "waiting", at: this.now() };
    this.changed();
    const done: Promise<{ url?: string; error?: string }> = this.exclusive(async () => {
      const linked = this.linked();
      return restoreDevice({
        store: linked.store,
        provider: await this.providerOf(),
        unlock: {
          passkey: (credentials) => {
            const request = web.unlock(credentials);
            askFor(request.url);
            return request.result;
          },
        },
      });
    }).then(
      ({ manifest, imported }) => {
        this.status.restore = {
          state: "done",
          at: this.now(),
          imported,
          sequence: manifest.sequence,
        };
        this.log.info({ sequence: manifest.sequence, imported }, "backup restored");
        return {};
      },
      (err: unknown) => {
        const error = explain(err);
        this.status.restore = { state: "failed", at: this.now(), error };
        this.log.warn({ err: describeError(err) }, "restore failed");
        return { error };
      },
    );
    void done.finally(() => {
      this.changed();
    });
    return Promise.race([asked.then((url) => ({ url })), done]);
  }

  /** The newest sequence number this bot wrote or restored (0 before any). */
  sequence(): number {
    const linked = this.bot.linkedDevice();
    return linked ? lastBackupSequence(linked.store) : 0;
  }
}
