import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from "node:crypto";
import type { BlobKeySlot } from "@pairwise/core";
import { BackupError } from "./errors.ts";
import { BACKUP_KEY_BYTES } from "./recovery-key.ts";

/** Blob header slot types used by backups. */
export const SLOT_RECOVERY = 1;
export const SLOT_PASSKEY = 2;
export const SLOT_PASSWORD = 3;

/** HKDF info of the passkey KEK (PROTOCOL.md, Backups). */
export const PASSKEY_KEK_INFO = "Pairwise Backup Passkey v1";
/** HKDF info of the password KEK, derived from the OPAQUE export key. */
export const PASSWORD_KEK_INFO = "Pairwise Backup Password v1";

const CHECK_INFO = "Pairwise Backup Key Check v1";
const CHECK_BYTES = 16;
const WRAP_NONCE = 12;
const WRAP_TAG = 16;
/** Bytes of a wrapped backup key: nonce ‖ ciphertext ‖ tag. */
export const WRAPPED_KEY_BYTES = WRAP_NONCE + BACKUP_KEY_BYTES + WRAP_TAG;
/** Bytes of a passkey slot's salt (also the PRF input). */
export const PASSKEY_SALT_BYTES = 32;

/** The recovery-key slot: a key check, so a wrong key is told apart from a tampered backup. */
export interface RecoverySlot {
  readonly kind: "recovery";
  readonly check: Uint8Array;
}

/** A passkey slot: the backup key wrapped under HKDF(PRF output, salt, PASSKEY_KEK_INFO). */
export interface PasskeySlot {
  readonly kind: "passkey";
  readonly credentialId: Uint8Array;
  /** Per-slot salt: the HKDF salt and the PRF input (`eval.first`). */
  readonly salt: Uint8Array;
  readonly wrapped: Uint8Array;
  /**
   * The credential's COSE public key (may be empty), so a page on a new device can verify the
   * assertion server-side before it trusts the PRF output.
   */
  readonly publicKey: Uint8Array;
}

/** A password slot: where the OPAQUE vault record lives; the wrapped key stays in the vault. */
export interface PasswordSlot {
  readonly kind: "password";
  /** The vault's base URL (`http://host:port` of a Pairwise server). */
  readonly vaultUrl: string;
  /** The record id in the vault (32 hex digits, random). */
  readonly vaultId: string;
}

/** One way to unlock a backup. */
export type KeySlot = RecoverySlot | PasskeySlot | PasswordSlot;

/** The check value of a backup key, kept in the recovery slot. */
export function keyCheck(backupKey: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(
    createHmac("sha256", backupKey).update(CHECK_INFO).digest().subarray(0, CHECK_BYTES),
  );
}

/** Does `backupKey` match the recovery slot's check? Constant time. */
export function matchesKeyCheck(slot: RecoverySlot, backupKey: Uint8Array): boolean {
  const expected = keyCheck(backupKey);
  return slot.check.length === expected.length && timingSafeEqual(slot.check, expected);
}

/** Derives a 32-byte KEK. */
export function deriveKek(secret: Uint8Array, salt: Uint8Array, info: string): Uint8Array {
  return new Uint8Array(hkdfSync("sha256", secret, salt, info, 32));
}

/** AES-256-GCM-wraps the backup key under `kek` (AAD binds the slot type). */
export function wrapKey(
  kek: Uint8Array,
  backupKey: Uint8Array,
  slotType: number,
  random: (n: number) => Uint8Array = randomBytes,
): Uint8Array<ArrayBuffer> {
  const nonce = random(WRAP_NONCE);
  const cipher = createCipheriv("aes-256-gcm", kek, nonce);
  cipher.setAAD(Uint8Array.of(slotType));
  const out = Buffer.concat([nonce, cipher.update(backupKey), cipher.final(), cipher.getAuthTag()]);
  return new Uint8Array(out);
}

/** Unwraps a backup key; `BackupError("WrongKey")` when the KEK is wrong or the bytes changed. */
export function unwrapKey(
  kek: Uint8Array,
  wrapped: Uint8Array,
  slotType: number,
): Uint8Array<ArrayBuffer> {
  if (wrapped.length !== WRAPPED_KEY_BYTES) {
    throw new BackupError("Tampered", "wrapped key has the wrong size");
  }
  const decipher = createDecipheriv("aes-256-gcm", kek, wrapped.subarray(0, WRAP_NONCE));
  decipher.setAAD(Uint8Array.of(slotType));
  decipher.setAuthTag(wrapped.subarray(WRAP_NONCE + BACKUP_KEY_BYTES));
  try {
    const key = Buffer.concat([
      decipher.update(wrapped.subarray(WRAP_NONCE, WRAP_NONCE + BACKUP_KEY_BYTES)),
      decipher.final(),
    ]);
    return new Uint8Array(key);
  } catch {
    throw new BackupError("WrongKey", "this key does not unlock the backup");
  }
}

/** Encodes slots for a blob header. */
export function encodeSlots(slots: readonly KeySlot[]): BlobKeySlot[] {
  return slots.map((slot) => {
    switch (slot.kind) {
      case "recovery":
        return { type: SLOT_RECOVERY, data: slot.check };
      case "passkey": {
        const data = Buffer.concat([
          Uint8Array.of(slot.credentialId.length),
          slot.credentialId,
          slot.salt,
          slot.wrapped,
          slot.publicKey,
        ]);
        return { type: SLOT_PASSKEY, data: new Uint8Array(data) };
      }
      case "password": {
        const url = Buffer.from(slot.vaultUrl, "utf8");
        const data = Buffer.concat([
          Buffer.from(slot.vaultId, "hex"),
          Uint8Array.of(url.length >> 8, url.length & 0xff),
          url,
        ]);
        return { type: SLOT_PASSWORD, data: new Uint8Array(data) };
      }
    }
  });
}

/**
 * Decodes header slots (unknown types are skipped, so newer unlock methods do not break older
 * readers). Throws `BackupError("Tampered")` for a malformed known slot or a missing recovery
 * slot.
 */
export function decodeSlots(slots: readonly BlobKeySlot[]): KeySlot[] {
  const out: KeySlot[] = [];
  for (const { type, data } of slots) {
    if (type === SLOT_RECOVERY) {
      if (data.length !== CHECK_BYTES) throw tampered();
      out.push({ kind: "recovery", check: data });
    } else if (type === SLOT_PASSKEY) {
      const idLength = data[0] ?? 0;
      const keyAt = 1 + idLength + PASSKEY_SALT_BYTES + WRAPPED_KEY_BYTES;
      if (idLength === 0 || data.length < keyAt) throw tampered();
      out.push({
        kind: "passkey",
        credentialId: data.slice(1, 1 + idLength),
        salt: data.slice(1 + idLength, 1 + idLength + PASSKEY_SALT_BYTES),
        wrapped: data.slice(1 + idLength + PASSKEY_SALT_BYTES, keyAt),
        publicKey: data.slice(keyAt),
      });
    } else if (type === SLOT_PASSWORD) {
      if (data.length < 18) throw tampered();
      const urlLength = ((data[16] ?? 0) << 8) | (data[17] ?? 0);
      if (data.length !== 18 + urlLength) throw tampered();
      out.push({
        kind: "password",
        vaultId: Buffer.from(data.subarray(0, 16)).toString("hex"),
        vaultUrl: Buffer.from(data.subarray(18)).toString("utf8"),
      });
    }
  }
  if (!out.some((s) => s.kind === "recovery")) throw tampered();
  return out;
}

function tampered(): BackupError {
  return new BackupError("Tampered", "backup key slots are malformed");
}
