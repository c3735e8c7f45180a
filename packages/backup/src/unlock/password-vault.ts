import { randomBytes } from "node:crypto";
import * as opaque from "@serenity-kit/opaque";
import { BackupError } from "../internal/errors.ts";
import { addPasswordSlot, type BackupKeyring, type PasswordOpener } from "../internal/keyring.ts";
import {
  PASSWORD_KEK_INFO,
  SLOT_PASSWORD,
  deriveKek,
  unwrapKey,
  wrapKey,
  type PasswordSlot,
} from "../internal/key-slots.ts";

/** Options shared by the vault calls. */
export interface VaultClientOptions {
  /** `fetch` to use (tests, proxies); default the global one. */
  readonly fetch?: typeof fetch;
}

const PATH = "/backup-vault/v1/";

/**
 * Enrols a password for a keyring at a Pairwise server's backup key vault (OPAQUE registration:
 * the server learns neither the password nor the backup key) and returns the keyring with a
 * password slot. `vaultUrl` is the server's HTTP base URL (`http://host:port`). Throws
 * `BackupError("InvalidArgument")` for an empty password or a bad URL, `"VaultRefused"` when
 * the vault refuses, `"ProviderFailure"` when it cannot be reached.
 */
export async function enrolPassword(
  input: { keyring: BackupKeyring; vaultUrl: string; password: string },
  options: VaultClientOptions = {},
): Promise<BackupKeyring> {
  if (input.password.length === 0) throw new BackupError("InvalidArgument", "empty password");
  const vaultUrl = normalizeUrl(input.vaultUrl);
  await opaque.ready;
  const vaultId = randomBytes(16).toString("hex");
  const { clientRegistrationState, registrationRequest } = opaque.client.startRegistration({
    password: input.password,
  });
  const { registrationResponse } = await call<{ registrationResponse: string }>(
    vaultUrl,
    "register/start",
    { vaultId, registrationRequest },
    options,
  );
  const { registrationRecord, exportKey } = opaque.client.finishRegistration({
    clientRegistrationState,
    registrationResponse,
    password: input.password,
  });
  const wrapped = wrapKey(kekOf(exportKey, vaultId), input.keyring.key, SLOT_PASSWORD);
  await call(
    vaultUrl,
    "register/finish",
    { vaultId, registrationRecord, wrappedKey: Buffer.from(wrapped).toString("base64url") },
    options,
  );
  return addPasswordSlot(input.keyring, { kind: "password", vaultUrl, vaultId });
}

/**
 * Opens a password slot at its vault: OPAQUE login (counted as a guess when it starts), then the
 * wrapped key the vault releases after the login finishes, unwrapped under the export key.
 * Throws `BackupError("WrongKey")` for a wrong password (the guess is spent),
 * `"VaultLocked"` once the record was destroyed after too many guesses, `"VaultRefused"` for an
 * unknown record, `"ProviderFailure"` when the vault cannot be reached.
 */
export function createPasswordOpener(options: VaultClientOptions = {}): PasswordOpener {
  return async (slot, password) => {
    const released = await login(slot, password, false, options);
    if (!released) throw new BackupError("VaultRefused", "vault released no key");
    return released;
  };
}

/**
 * Deletes a password slot's vault record; needs the password (a successful login). Errors like
 * {@link createPasswordOpener}.
 */
export async function deletePasswordRecord(
  slot: PasswordSlot,
  password: string,
  options: VaultClientOptions = {},
): Promise<void> {
  await login(slot, password, true, options);
}

async function login(
  slot: PasswordSlot,
  password: string,
  remove: boolean,
  options: VaultClientOptions,
): Promise<Uint8Array | undefined> {
  await opaque.ready;
  const { clientLoginState, startLoginRequest } = opaque.client.startLogin({ password });
  const started = await call<{ loginId: string; loginResponse: string }>(
    slot.vaultUrl,
    "login/start",
    { vaultId: slot.vaultId, startLoginRequest },
    options,
  );
  const finished = opaque.client.finishLogin({
    clientLoginState,
    loginResponse: started.loginResponse,
    password,
  });
  if (!finished) {
    // Tell the vault this guess failed (best effort), so a used-up record goes at once.
    await call(slot.vaultUrl, "login/abort", { loginId: started.loginId }, options).catch(
      () => undefined,
    );
    throw new BackupError("WrongKey", "wrong password");
  }
  const done = await call<{ wrappedKey?: string }>(
    slot.vaultUrl,
    "login/finish",
    { loginId: started.loginId, finishLoginRequest: finished.finishLoginRequest, delete: remove },
    options,
  );
  if (remove) return undefined;
  if (typeof done.wrappedKey !== "string") {
    throw new BackupError("VaultRefused", "vault answered without a key");
  }
  const wrapped = new Uint8Array(Buffer.from(done.wrappedKey, "base64url"));
  return unwrapKey(kekOf(finished.exportKey, slot.vaultId), wrapped, SLOT_PASSWORD);
}

function kekOf(exportKey: string, vaultId: string): Uint8Array {
  return deriveKek(
    Buffer.from(exportKey, "base64url"),
    Buffer.from(vaultId, "hex"),
    PASSWORD_KEK_INFO,
  );
}

function normalizeUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new BackupError("InvalidArgument", "vault URL is not a URL");
  }
  if (parsed.protocol === "ws:") parsed.protocol = "http:";
  if (parsed.protocol === "wss:") parsed.protocol = "https:";
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new BackupError("InvalidArgument", "vault URL must be http(s)");
  }
  return parsed.origin;
}

async function call<T extends object>(
  vaultUrl: string,
  route: string,
  body: object,
  options: VaultClientOptions,
): Promise<T> {
  const doFetch = options.fetch ?? fetch;
  let res: Response;
  try {
    res = await doFetch(`${vaultUrl}${PATH}${route}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (cause) {
    throw new BackupError("ProviderFailure", "cannot reach the backup key vault", { cause });
  }
  let json: unknown;
  try {
    json = await res.json();
  } catch (cause) {
    throw new BackupError("ProviderFailure", "backup key vault answered garbage", { cause });
  }
  if (res.ok && typeof json === "object" && json !== null) return json as T;
  if (res.status === 410) {
    throw new BackupError("VaultLocked", "vault record destroyed after too many wrong guesses");
  }
  if (res.status === 403) throw new BackupError("WrongKey", "wrong password");
  if (res.status >= 500) throw new BackupError("ProviderFailure", "backup key vault failed");
  throw new BackupError("VaultRefused", `backup key vault refused (${String(res.status)})`);
}
