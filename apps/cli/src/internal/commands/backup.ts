import { createInterface } from "node:readline";
import {
  BackupError,
  addPasskeySlot,
  backupDevice,
  listBackups,
  loadDeviceKeyring,
  recoveryKeyOf,
  removeSlots,
  restoreDevice,
  saveDeviceKeyring,
  type BackupKeyring,
  type BackupProgress,
  type BackupUnlock,
  type PasswordSlot,
} from "@pairwise/backup";
import { flagOption, stringOption, type Command } from "../command.ts";
import { identityOf, withDevice } from "../device-session.ts";
import { CliError, usageError } from "../errors.ts";
import type { CliContext } from "../io.ts";
import { printResult } from "../output.ts";
import { parseDestination, providerFor } from "./backup-destination.ts";

/** The passkey page on `http://localhost:PORT` (`--passkey-port`, default any free port). */
async function passkeyWeb(values: Record<string, string | boolean | undefined>) {
  const raw = stringOption(values, "passkey-port");
  const port = raw === undefined ? 0 : Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw usageError("--passkey-port must be a port number");
  }
  const { startPasskeyWeb } = await import("@pairwise/backup/passkey-web");
  return startPasskeyWeb({ port });
}
/** Reads one line (a secret) from stdin; never echoes it back or logs it. */
async function readSecret(ctx: CliContext, what: string): Promise<string> {
  if (ctx.io.stdinIsTTY) ctx.io.stderr(`${what}: `);
  const rl = createInterface({ input: ctx.io.stdin, terminal: false });
  try {
    for await (const line of rl) return line.trim();
  } finally {
    rl.close();
  }
  throw usageError(`no ${what} on standard input`);
}

/** A progress line on a terminal (not with --json): bytes so far, redrawn at most 4 times a second. */
function progress(
  ctx: CliContext,
  verb: string,
): { update: (p: BackupProgress) => void; done: () => void } {
  if (ctx.json || !ctx.io.stderrIsTTY) return { update: () => undefined, done: () => undefined };
  let last = 0;
  let shown = false;
  return {
    update: (p) => {
      const now = Date.now();
      if (now - last < 250) return;
      last = now;
      shown = true;
      const mb = (p.plaintextBytes / 1e6).toFixed(1);
      const bar = "#".repeat(Math.min(30, Math.floor(now / 250) % 31)).padEnd(30, ".");
      ctx.io.stderr(`\r${verb} [${bar}] ${mb} MB`);
    },
    done: () => {
      if (shown) ctx.io.stderr("\n");
    },
  };
}

/** Turns a backup failure into the message the user sees (never with key material). */
async function explainBackup<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (!BackupError.is(err)) throw err;
    const messages: Record<string, string> = {
      WrongKey: "this recovery key, password or passkey does not unlock the backup",
      Tampered: "the backup has been modified or damaged; nothing was restored",
      RolledBack: "the backup is older than one this device has already seen; nothing was restored",
      Incomplete: "the backup is incomplete (an upload was cut off); nothing was restored",
      NotFound: "no backup found there",
      VaultLocked:
        "the password vault destroyed this backup's password after too many wrong guesses; use the recovery key",
      VaultRefused: "the password vault refused",
      ProviderFailure: "the backup storage failed",
      PasskeyFailed: "the passkey gave no key",
      InvalidArgument: err.message.replace(/^InvalidArgument: /, ""),
    };
    throw new CliError("Failed", messages[err.code] ?? err.message, { cause: err });
  }
}

const HELP = `backup create --to DEST       back up this device's history, contacts and settings
                                (never its keys); the first backup creates the backup key
                                and prints its recovery key: write it down
                                output (--json): {"backup":ID,"sequence":N,"bytes":N,
                                "records":N,"recoveryKey"?:KEY}
backup list --from DEST       backups there, newest first; output: [{"id","sequence",
                                "complete","bytes"}]
backup restore --from DEST    import a backup into this (registered) device, all or nothing;
    [--id ID]                   unlock with --recovery-key-stdin or --password-stdin (one line
    --recovery-key-stdin |      on standard input, or --passkey: open the printed URL); register
    --password-stdin |          or link the new device first
    --passkey                   output: {"backup":ID,"records":N,"imported":N}
backup keys show              the recovery key; output: {"recoveryKey":KEY,"slots":[...]}
backup keys add-password --vault URL --password-stdin
                              enrol a password at a Pairwise server's key vault (10 guesses)
backup keys add-passkey [--passkey-port N]
                              enrol a passkey (WebAuthn PRF): open the printed localhost URL
backup keys remove-password   drop the password slot from future backups
backup keys remove-passkeys   drop every passkey slot from future backups
DEST is fs:DIR, s3://BUCKET/PREFIX (AWS environment, PAIRWISE_S3_ENDPOINT), gdrive
(PAIRWISE_GDRIVE_TOKEN) or icloud (PAIRWISE_ICLOUD_CONTAINER, _KEY_ID, _KEY_FILE).
Key changes apply to backups made afterwards.`;

/** `pairwise backup create|list|restore|keys`. */
export const backupCommand: Command = {
  name: "backup",
  summary: "end-to-end encrypted backups: create, list, restore, keys",
  synopsis:
    "backup create --to DEST | backup list --from DEST | backup restore --from DEST | backup keys ...",
  help: HELP,
  options: {
    to: { type: "string" },
    from: { type: "string" },
    id: { type: "string" },
    vault: { type: "string" },
    "recovery-key-stdin": { type: "boolean" },
    "password-stdin": { type: "boolean" },
    passkey: { type: "boolean" },
    "passkey-port": { type: "string" },
  },
  positionals: ["ACTION", "ARGS..."],
  budgetMs: () => undefined,
  async run(ctx, { values, positionals }) {
    const [action = "", sub, extra] = positionals;
    if (action !== "keys" && sub !== undefined)
      throw usageError(`backup ${action} takes no arguments`);
    if (action === "create") {
      const provider = await providerFor(parseDestination(stringOption(values, "to"), "--to"));
      await withDevice(ctx, async (device) => {
        const me = identityOf(ctx, device);
        const bar = progress(ctx, "backing up");
        const { manifest, sequence, recoveryKey } = await explainBackup(
          backupDevice({
            store: device.store,
            provider,
            labels: { account: me.accountId, device: String(me.deviceId) },
            onProgress: bar.update,
          }),
        ).finally(bar.done);
        printResult(
          ctx,
          {
            backup: manifest.id,
            sequence,
            bytes: manifest.ciphertextBytes,
            records: manifest.records,
            ...(recoveryKey ? { recoveryKey } : {}),
          },
          `backed up ${String(manifest.records)} records (${String(manifest.ciphertextBytes)} bytes) as ${manifest.id}` +
            (recoveryKey
              ? `\nYour recovery key (write it down; it is shown only now and with 'pairwise backup keys show'):\n  ${recoveryKey}`
              : ""),
        );
      });
      return;
    }
    if (action === "list") {
      const provider = await providerFor(parseDestination(stringOption(values, "from"), "--from"));
      const list = await explainBackup(listBackups({ provider }));
      printResult(
        ctx,
        list.map((b) => ({
          id: b.id,
          sequence: b.sequence,
          complete: b.complete,
          bytes: b.storedBytes,
        })),
        list
          .map(
            (b) =>
              `${b.id}  #${String(b.sequence)}  ${String(b.storedBytes)} bytes${b.complete ? "" : "  (incomplete)"}`,
          )
          .join("\n") || "no backups",
      );
      return;
    }
    if (action === "restore") {
      const provider = await providerFor(parseDestination(stringOption(values, "from"), "--from"));
      const byKey = flagOption(values, "recovery-key-stdin");
      const byPassword = flagOption(values, "password-stdin");
      const byPasskey = flagOption(values, "passkey");
      if (Number(byKey) + Number(byPassword) + Number(byPasskey) !== 1) {
        throw usageError("give one of --recovery-key-stdin, --password-stdin or --passkey");
      }
      const id = stringOption(values, "id");
      await withDevice(ctx, async (device) => {
        identityOf(ctx, device);
        let unlock: BackupUnlock;
        let web: { close: () => Promise<void> } | undefined;
        if (byKey) {
          unlock = { recoveryKey: await readSecret(ctx, "recovery key") };
        } else if (byPasskey) {
          const running = await passkeyWeb(values);
          web = running;
          unlock = {
            passkey: running.prf((url) => {
              ctx.io.stderr(`open ${url} in a browser on this machine to use your passkey\n`);
            }),
          };
        } else {
          const { createPasswordOpener } = await import("@pairwise/backup/password-vault");
          unlock = {
            password: await readSecret(ctx, "password"),
            openPasswordSlot: createPasswordOpener(),
          };
        }
        const bar = progress(ctx, "restoring");
        const { manifest, imported } = await explainBackup(
          restoreDevice({
            store: device.store,
            provider,
            unlock,
            ...(id === undefined ? {} : { id }),
            onProgress: bar.update,
          }),
        ).finally(() => {
          bar.done();
          return web?.close();
        });
        printResult(
          ctx,
          { backup: manifest.id, records: manifest.records, imported },
          `restored ${manifest.id}: ${String(imported)} records imported`,
        );
      });
      return;
    }
    if (action === "keys") {
      if (extra !== undefined) throw usageError("backup keys takes one action");
      await withDevice(ctx, async (device) => {
        identityOf(ctx, device);
        const keyring = loadDeviceKeyring(device.store);
        if (!keyring)
          throw new CliError("Failed", "no backup key yet: run 'pairwise backup create' first");
        const describe = (k: BackupKeyring) =>
          k.slots.map((s) =>
            s.kind === "password"
              ? { kind: s.kind, vault: s.vaultUrl }
              : s.kind === "passkey"
                ? { kind: s.kind, credential: Buffer.from(s.credentialId).toString("base64url") }
                : { kind: s.kind },
          );
        if (sub === "show") {
          const recoveryKey = recoveryKeyOf(keyring);
          printResult(
            ctx,
            { recoveryKey, slots: describe(keyring) },
            `recovery key: ${recoveryKey}\nunlock methods: ${keyring.slots.map((s) => s.kind).join(", ")}`,
          );
          return;
        }
        if (sub === "add-password") {
          const vault = stringOption(values, "vault");
          if (vault === undefined) throw usageError("--vault URL is required");
          if (!flagOption(values, "password-stdin"))
            throw usageError("--password-stdin is required");
          const password = await readSecret(ctx, "new password");
          const { enrolPassword } = await import("@pairwise/backup/password-vault");
          const next = await explainBackup(enrolPassword({ keyring, vaultUrl: vault, password }));
          saveDeviceKeyring(device.store, next);
          printResult(
            ctx,
            { slots: describe(next) },
            "password added; it applies to backups made from now on",
          );
          return;
        }
        if (sub === "add-passkey") {
          const web = await passkeyWeb(values);
          try {
            const me = identityOf(ctx, device);
            const enrolment = web.enrol(me.accountId);
            ctx.io.stderr(
              `open ${web.origin}${enrolment.url} in a browser on this machine to create a passkey\n`,
            );
            const next = addPasskeySlot(keyring, await explainBackup(enrolment.result));
            saveDeviceKeyring(device.store, next);
            printResult(
              ctx,
              { slots: describe(next) },
              "passkey added; it applies to backups made from now on",
            );
          } finally {
            await web.close();
          }
          return;
        }
        if (sub === "remove-password" || sub === "remove-passkeys") {
          const next =
            sub === "remove-password"
              ? removeSlots(keyring, { password: true })
              : removeSlots(keyring, { passkey: "all" });
          saveDeviceKeyring(device.store, next);
          const gone = keyring.slots.filter((s): s is PasswordSlot => s.kind === "password").length;
          printResult(
            ctx,
            { slots: describe(next) },
            sub === "remove-password" && gone === 0
              ? "no password slot"
              : "removed; applies to backups made from now on",
          );
          return;
        }
        throw usageError(
          `unknown backup keys action '${sub ?? ""}' (show, add-password, remove-password, remove-passkeys)`,
        );
      });
      return;
    }
    throw usageError(`unknown backup action '${action}' (create, list, restore, keys)`);
  },
};
