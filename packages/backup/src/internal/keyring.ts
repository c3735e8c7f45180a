import { randomBytes } from "node:crypto";
import { z } from "zod";
import { BackupError } from "./errors.ts";
import {
  PASSKEY_KEK_INFO,
  PASSKEY_SALT_BYTES,
  SLOT_PASSKEY,
  deriveKek,
  keyCheck,
  matchesKeyCheck,
  unwrapKey,
  wrapKey,
  type KeySlot,
  type PasskeySlot,
  type PasswordSlot,
  type RecoverySlot,
} from "./key-slots.ts";
import { BACKUP_KEY_BYTES, formatRecoveryKey, parseRecoveryKey } from "./recovery-key.ts";

/**
 * A device's backup key with every slot that unlocks it. The recovery slot always exists; passkey
 * and password slots are added next to it, never instead of it. Keep a keyring where the device
 * keeps its private keys: it holds the backup key itself.
 */
export interface BackupKeyring {
  readonly key: Uint8Array;
  readonly slots: readonly KeySlot[];
}

/** What a passkey's PRF extension answered for one credential. */
export interface PasskeyPrfResult {
  readonly credentialId: Uint8Array;
  /** The PRF `results.first` output (32 bytes). */
  readonly output: Uint8Array;
}

/**
 * Evaluates the WebAuthn PRF extension (with `userVerification: "required"`) for one of the
 * offered credentials, each with its slot's salt as `eval.first`; see `@pairwise/backup/passkey-web`
 * for a browser page that does this.
 */
export type PasskeyPrf = (
  credentials: ReadonlyArray<{ credentialId: Uint8Array; salt: Uint8Array; publicKey: Uint8Array }>,
) => Promise<PasskeyPrfResult>;

/** Opens a password slot: asks the vault (OPAQUE) and returns the backup key it released. */
export type PasswordOpener = (slot: PasswordSlot, password: string) => Promise<Uint8Array>;

/** One way to unlock a backup. */
export type BackupUnlock =
  | { readonly recoveryKey: string }
  | { readonly passkey: PasskeyPrf }
  | { readonly password: string; readonly openPasswordSlot: PasswordOpener };

/** A fresh keyring: 32 random bytes and the recovery slot. */
export function createKeyring(random: (n: number) => Uint8Array = randomBytes): BackupKeyring {
  const key = new Uint8Array(random(BACKUP_KEY_BYTES));
  if (key.length !== BACKUP_KEY_BYTES) {
    throw new BackupError("InvalidArgument", "random source returned the wrong number of bytes");
  }
  return { key, slots: [{ kind: "recovery", check: keyCheck(key) }] };
}

/** The recovery key of a keyring, 64 hex digits in 16 groups of 4. */
export function recoveryKeyOf(keyring: BackupKeyring): string {
  return formatRecoveryKey(keyring.key);
}

/** A fresh per-slot passkey salt, to pass as the PRF input when enrolling. */
export function createPasskeySalt(random: (n: number) => Uint8Array = randomBytes): Uint8Array {
  return new Uint8Array(random(PASSKEY_SALT_BYTES));
}

/**
 * Adds a passkey slot: the backup key wrapped under HKDF(PRF output, salt, "Pairwise Backup
 * Passkey v1"). `prfOutput` must be the PRF result for `salt`. Replaces a slot of the same
 * credential. Throws `BackupError("InvalidArgument")` for bad sizes.
 */
export function addPasskeySlot(
  keyring: BackupKeyring,
  input: {
    credentialId: Uint8Array;
    salt: Uint8Array;
    prfOutput: Uint8Array;
    /** The credential's COSE public key, kept so unlock pages can verify assertions. */
    publicKey?: Uint8Array;
  },
): BackupKeyring {
  if (input.credentialId.length < 1 || input.credentialId.length > 255) {
    throw new BackupError("InvalidArgument", "credential id must be 1..255 bytes");
  }
  if (input.salt.length !== PASSKEY_SALT_BYTES || input.prfOutput.length < 32) {
    throw new BackupError("InvalidArgument", "passkey salt or PRF output has the wrong size");
  }
  const kek = deriveKek(input.prfOutput, input.salt, PASSKEY_KEK_INFO);
  const slot: PasskeySlot = {
    kind: "passkey",
    credentialId: new Uint8Array(input.credentialId),
    salt: new Uint8Array(input.salt),
    wrapped: wrapKey(kek, keyring.key, SLOT_PASSKEY),
    publicKey: new Uint8Array(input.publicKey ?? []),
  };
  const others = keyring.slots.filter(
    (s) => !(s.kind === "passkey" && Buffer.from(s.credentialId).equals(input.credentialId)),
  );
  return { key: keyring.key, slots: [...others, slot] };
}

/** Adds (or replaces) the password slot; enrol the password in the vault first. */
export function addPasswordSlot(keyring: BackupKeyring, slot: PasswordSlot): BackupKeyring {
  if (!/^[0-9a-f]{32}$/.test(slot.vaultId)) {
    throw new BackupError("InvalidArgument", "vault id must be 32 hex digits");
  }
  return { key: keyring.key, slots: [...keyring.slots.filter((s) => s.kind !== "password"), slot] };
}

/**
 * Removes passkey or password slots. The recovery slot cannot be removed: a passkey or password
 * is never the only way in.
 */
export function removeSlots(
  keyring: BackupKeyring,
  which: { passkey?: Uint8Array | "all"; password?: boolean },
): BackupKeyring {
  const slots = keyring.slots.filter((s) => {
    if (s.kind === "password") return which.password !== true;
    if (s.kind === "passkey") {
      if (which.passkey === "all") return false;
      return which.passkey === undefined || !Buffer.from(s.credentialId).equals(which.passkey);
    }
    return true;
  });
  return { key: keyring.key, slots };
}

/**
 * Finds the backup key from a backup's slots and one unlock method, and checks it against the
 * recovery slot's key check. Throws `BackupError("WrongKey")` when the method does not open the
 * backup, `"InvalidArgument"` for a malformed recovery key, `"NotFound"` when the backup has no
 * slot of that kind, and whatever the passkey or vault reports.
 */
export async function unlockBackupKey(
  slots: readonly KeySlot[],
  unlock: BackupUnlock,
): Promise<Uint8Array<ArrayBuffer>> {
  const recovery = slots.find((s): s is RecoverySlot => s.kind === "recovery");
  if (!recovery) throw new BackupError("Tampered", "backup has no recovery slot");
  let key: Uint8Array<ArrayBuffer>;
  if ("recoveryKey" in unlock) {
    key = parseRecoveryKey(unlock.recoveryKey);
  } else if ("passkey" in unlock) {
    const passkeys = slots.filter((s): s is PasskeySlot => s.kind === "passkey");
    if (passkeys.length === 0) throw new BackupError("NotFound", "backup has no passkey slot");
    const result = await unlock.passkey(
      passkeys.map((s) => ({ credentialId: s.credentialId, salt: s.salt, publicKey: s.publicKey })),
    );
    const slot = passkeys.find((s) => Buffer.from(s.credentialId).equals(result.credentialId));
    if (!slot) throw new BackupError("WrongKey", "this passkey does not unlock the backup");
    if (result.output.length < 32) throw new BackupError("PasskeyFailed", "no PRF result");
    key = unwrapKey(
      deriveKek(result.output, slot.salt, PASSKEY_KEK_INFO),
      slot.wrapped,
      SLOT_PASSKEY,
    );
  } else {
    const slot = slots.find((s): s is PasswordSlot => s.kind === "password");
    if (!slot) throw new BackupError("NotFound", "backup has no password slot");
    key = new Uint8Array(await unlock.openPasswordSlot(slot, unlock.password));
  }
  if (!matchesKeyCheck(recovery, key)) {
    throw new BackupError("WrongKey", "this key does not unlock the backup");
  }
  return key;
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64url");
const bytes = z
  .string()
  .regex(/^[A-Za-z0-9_-]*$/)
  .transform((s) => new Uint8Array(Buffer.from(s, "base64url")));
const keyringSchema = z.object({
  v: z.literal(1),
  key: bytes,
  slots: z.array(
    z.discriminatedUnion("kind", [
      z.object({ kind: z.literal("recovery"), check: bytes }),
      z.object({
        kind: z.literal("passkey"),
        credentialId: bytes,
        salt: bytes,
        wrapped: bytes,
        publicKey: bytes,
      }),
      z.object({ kind: z.literal("password"), vaultUrl: z.string(), vaultId: z.string() }),
    ]),
  ),
});

/** Serializes a keyring for the device's own storage (it contains the backup key). */
export function encodeKeyring(keyring: BackupKeyring): string {
  return JSON.stringify({
    v: 1,
    key: b64(keyring.key),
    slots: keyring.slots.map((s) =>
      s.kind === "recovery"
        ? { kind: s.kind, check: b64(s.check) }
        : s.kind === "passkey"
          ? {
              kind: s.kind,
              credentialId: b64(s.credentialId),
              salt: b64(s.salt),
              wrapped: b64(s.wrapped),
              publicKey: b64(s.publicKey),
            }
          : { kind: s.kind, vaultUrl: s.vaultUrl, vaultId: s.vaultId },
    ),
  });
}

/** Parses {@link encodeKeyring}'s output; `BackupError("InvalidArgument")` when malformed. */
export function decodeKeyring(text: string): BackupKeyring {
  let parsed;
  try {
    parsed = keyringSchema.parse(JSON.parse(text));
  } catch (cause) {
    throw new BackupError("InvalidArgument", "stored backup keyring is malformed", { cause });
  }
  const recovery = parsed.slots.find((s) => s.kind === "recovery");
  if (
    parsed.key.length !== BACKUP_KEY_BYTES ||
    !recovery ||
    !matchesKeyCheck(recovery, parsed.key)
  ) {
    throw new BackupError("InvalidArgument", "stored backup keyring is inconsistent");
  }
  return { key: parsed.key, slots: parsed.slots };
}
