import { ServerError } from "../errors.ts";
import type {
  OneTimePreKeyRecord,
  PreKeyBundleRecord,
  PreKeyUpload,
  ServerStore,
  SignedPreKeyRecord,
} from "./server-store.ts";
import { bytes, type SqliteContext } from "./sqlite-context.ts";

type PreKeyMethods = Pick<ServerStore, "putPreKeys" | "takePreKeyBundle" | "countPreKeys">;

interface KeyRow {
  key_id: number;
  public_key: Buffer;
}
interface SignedKeyRow extends KeyRow {
  signature: Buffer;
}

/** Writes a device's uploaded keys; call inside a transaction. */
export type KeyWriter = (dev: number, upload: PreKeyUpload, now: number) => void;

/**
 * Prepares the statements that store an upload: the signed prekey and the last-resort Kyber
 * prekey replace the current ones; one-time keys are added, a re-uploaded id replacing its key.
 */
export function prepareKeyWriter(ctx: SqliteContext): KeyWriter {
  const { db } = ctx;
  const putSigned = db.prepare<[number, number, Uint8Array, Uint8Array, number]>(
    `INSERT INTO signed_prekeys (dev, key_id, public_key, signature, uploaded_at) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (dev) DO UPDATE SET key_id = excluded.key_id, public_key = excluded.public_key,
       signature = excluded.signature, uploaded_at = excluded.uploaded_at`,
  );
  const dropLastResort = db.prepare<[number]>(
    "DELETE FROM kyber_prekeys WHERE dev = ? AND last_resort = 1",
  );
  const putKyber = db.prepare<[number, number, number, Uint8Array, Uint8Array]>(
    `INSERT INTO kyber_prekeys (dev, last_resort, key_id, public_key, signature) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (dev, last_resort, key_id) DO UPDATE SET public_key = excluded.public_key,
       signature = excluded.signature`,
  );
  const putPreKey = db.prepare<[number, number, Uint8Array]>(
    `INSERT INTO prekeys (dev, key_id, public_key) VALUES (?, ?, ?)
     ON CONFLICT (dev, key_id) DO UPDATE SET public_key = excluded.public_key`,
  );
  return (dev, upload, now) => {
    const signed = upload.signedPreKey;
    if (signed) putSigned.run(dev, signed.id, signed.publicKey, signed.signature, now);
    const lastResort = upload.lastResortKyberPreKey;
    if (lastResort) {
      dropLastResort.run(dev);
      putKyber.run(dev, 1, lastResort.id, lastResort.publicKey, lastResort.signature);
    }
    for (const k of upload.preKeys) putPreKey.run(dev, k.id, k.publicKey);
    for (const k of upload.kyberPreKeys) putKyber.run(dev, 0, k.id, k.publicKey, k.signature);
  };
}

const signedRecord = (r: SignedKeyRow): SignedPreKeyRecord => ({
  id: r.key_id,
  publicKey: bytes(r.public_key),
  signature: bytes(r.signature),
});

/** The prekey part of the SQLite store. */
export function createSqlitePreKeys(ctx: SqliteContext, writeKeys: KeyWriter): PreKeyMethods {
  const { db, run } = ctx;
  const device = db.prepare<
    [string, number],
    { dev: number; registration_id: number; identity_key: Buffer }
  >(
    "SELECT dev, registration_id, identity_key FROM devices WHERE account_id = ? AND device_id = ?",
  );
  const signed = db.prepare<[number], SignedKeyRow & { uploaded_at: number }>(
    "SELECT key_id, public_key, signature, uploaded_at FROM signed_prekeys WHERE dev = ?",
  );
  // DELETE ... RETURNING pops the lowest id in one statement: each key is handed out once.
  const popPreKey = db.prepare<[number, number], KeyRow>(
    `DELETE FROM prekeys WHERE dev = ? AND key_id = (SELECT min(key_id) FROM prekeys WHERE dev = ?)
     RETURNING key_id, public_key`,
  );
  const popKyber = db.prepare<[number], SignedKeyRow>(
    `DELETE FROM kyber_prekeys WHERE id = (
       SELECT id FROM kyber_prekeys WHERE dev = ? AND last_resort = 0 ORDER BY key_id LIMIT 1)
     RETURNING key_id, public_key, signature`,
  );
  const lastResort = db.prepare<[number], SignedKeyRow>(
    "SELECT key_id, public_key, signature FROM kyber_prekeys WHERE dev = ? AND last_resort = 1",
  );
  const countPre = db.prepare<[number], { n: number }>(
    "SELECT count(*) AS n FROM prekeys WHERE dev = ?",
  );
  const countKyber = db.prepare<[number], { n: number }>(
    "SELECT count(*) AS n FROM kyber_prekeys WHERE dev = ? AND last_resort = 0",
  );

  const put = db.transaction(
    (accountId: string, deviceId: number, upload: PreKeyUpload, now: number) => {
      const dev = ctx.devKey(accountId, deviceId);
      if (dev === undefined) throw new ServerError("NotFound", "device not found");
      writeKeys(dev, upload, now);
    },
  );

  const take = db.transaction(
    (accountId: string, deviceId: number): PreKeyBundleRecord | undefined => {
      const d = device.get(accountId, deviceId);
      if (!d) return undefined;
      // Every device is created with both keys; without them no bundle can be built, and the
      // checks come before any pop so nothing is used up for a bundle that is not returned.
      const spk = signed.get(d.dev);
      if (!spk) return undefined;
      const kyber = popKyber.get(d.dev) ?? lastResort.get(d.dev);
      if (!kyber) return undefined;
      const pre = popPreKey.get(d.dev, d.dev);
      const preKey: OneTimePreKeyRecord | undefined = pre && {
        id: pre.key_id,
        publicKey: bytes(pre.public_key),
      };
      return {
        deviceId,
        registrationId: d.registration_id,
        identityKey: bytes(d.identity_key),
        signedPreKey: signedRecord(spk),
        ...(preKey ? { preKey } : {}),
        kyberPreKey: signedRecord(kyber),
      };
    },
  );

  return {
    putPreKeys: (accountId, deviceId, upload, now) =>
      run(() => {
        put(accountId, deviceId, upload, now);
      }),
    takePreKeyBundle: (accountId, deviceId) => run(() => take(accountId, deviceId)),
    countPreKeys: (accountId, deviceId) =>
      run(() => {
        const dev = ctx.devKey(accountId, deviceId);
        if (dev === undefined) throw new ServerError("NotFound", "device not found");
        return {
          preKeys: countPre.get(dev)?.n ?? 0,
          kyberPreKeys: countKyber.get(dev)?.n ?? 0,
          signedPreKeyUploadedAt: signed.get(dev)?.uploaded_at ?? 0,
        };
      }),
  };
}
