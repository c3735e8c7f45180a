import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import * as opaque from "@serenity-kit/opaque";
import type { Logger } from "pino";
import { z } from "zod";
import { ServerError, type ServerErrorCode } from "../errors.ts";
import type { ServerStore } from "../store/server-store.ts";

/** Wrong guesses after which the vault destroys a record (PROTOCOL.md, Backups). */
export const VAULT_MAX_GUESSES = 10;
/** URL prefix of the vault's HTTP API. */
export const VAULT_PATH = "/backup-vault/v1/";
const LOGIN_TTL_MS = 2 * 60_000;
const MAX_BODY_BYTES = 16 * 1024;
const WRAPPED_KEY_BYTES = 60;

const vaultId = z.string().regex(/^[0-9a-f]{32}$/);
const opaqueMessage = z
  .string()
  .min(1)
  .max(4096)
  .regex(/^[A-Za-z0-9_-]+$/);
const requests = {
  "register/start": z.object({ vaultId, registrationRequest: opaqueMessage }).strict(),
  "register/finish": z
    .object({
      vaultId,
      registrationRecord: opaqueMessage,
      wrappedKey: z.string().regex(/^[A-Za-z0-9_-]{80}$/),
    })
    .strict(),
  "login/start": z.object({ vaultId, startLoginRequest: opaqueMessage }).strict(),
  "login/finish": z
    .object({
      loginId: z.string().regex(/^[0-9a-f]{32}$/),
      finishLoginRequest: opaqueMessage,
      delete: z.boolean().optional(),
    })
    .strict(),
  "login/abort": z.object({ loginId: z.string().regex(/^[0-9a-f]{32}$/) }).strict(),
};
type Route = keyof typeof requests;

const STATUS: Partial<Record<ServerErrorCode, number>> = {
  InvalidRequest: 400,
  Unauthorized: 403,
  NotFound: 404,
  Conflict: 409,
  Expired: 410,
  PayloadTooLarge: 413,
  Unavailable: 503,
};

/** Loads the vault's OPAQUE server setup from the data dir, creating it on first start. */
export async function loadVaultSetup(dataDir: string): Promise<string> {
  await opaque.ready;
  const path = join(dataDir, "vault-setup.json");
  try {
    const raw = JSON.parse(readFileSync(path, "utf8")) as { serverSetup?: unknown };
    if (typeof raw.serverSetup === "string") return raw.serverSetup;
    throw new ServerError("InvalidRequest", "vault setup file is malformed");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new ServerError("InvalidRequest", `cannot read the vault setup in ${dataDir}`);
    }
  }
  const serverSetup = opaque.server.createSetup();
  writeFileSync(path, JSON.stringify({ serverSetup }), { mode: 0o600, flag: "wx" });
  return serverSetup;
}

/**
 * The backup key vault over HTTP (`POST /backup-vault/v1/<route>`, JSON). A record is an OPAQUE
 * registration and a backup key the client wrapped under its export key; the server never sees
 * the password or the key. A guess is counted when a login *starts*; the wrapped key is released
 * only when the login *finishes* successfully (which resets the count); after
 * {@link VAULT_MAX_GUESSES} guesses without success the record is destroyed. Answers
 * `{ error: code }` with 400/403/404/409/410/413/503 on refusal; logs never carry request bodies.
 */
export function createVaultHandler(options: {
  store: ServerStore;
  serverSetup: string;
  logger: Logger;
  now?: () => number;
}): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { store, serverSetup, logger } = options;
  const now = options.now ?? Date.now;

  const handlers: { [R in Route]: (body: z.infer<(typeof requests)[R]>) => Promise<object> } = {
    "register/start": (body) => {
      const { registrationResponse } = opaque.server.createRegistrationResponse({
        serverSetup,
        userIdentifier: body.vaultId,
        registrationRequest: body.registrationRequest,
      });
      return Promise.resolve({ registrationResponse });
    },
    "register/finish": async (body) => {
      const wrappedKey = new Uint8Array(Buffer.from(body.wrappedKey, "base64url"));
      if (wrappedKey.length !== WRAPPED_KEY_BYTES) {
        throw new ServerError("InvalidRequest", "wrapped key has the wrong size");
      }
      await store.createVaultRecord({
        vaultId: body.vaultId,
        registrationRecord: body.registrationRecord,
        wrappedKey,
        now: now(),
      });
      logger.info("backup vault record created");
      return {};
    },
    "login/start": async (body) => {
      const record = await store.getVaultRecord(body.vaultId);
      if (!record) throw new ServerError("NotFound", "no such vault record");
      const { serverLoginState, loginResponse } = opaque.server.startLogin({
        serverSetup,
        userIdentifier: body.vaultId,
        registrationRecord: record.registrationRecord,
        startLoginRequest: body.startLoginRequest,
      });
      const loginId = randomBytes(16).toString("hex");
      const at = now();
      // The guess is counted and the login stored together, or not at all.
      const counted = await store.countVaultGuess({
        vaultId: body.vaultId,
        maxGuesses: VAULT_MAX_GUESSES,
        now: at,
        login: { loginId, state: serverLoginState, expiresAt: at + LOGIN_TTL_MS },
      });
      if (counted === undefined) throw new ServerError("NotFound", "no such vault record");
      if (counted === "locked") {
        logger.warn("backup vault record locked after too many guesses");
        throw new ServerError("Expired", "vault record destroyed after too many guesses");
      }
      return { loginId, loginResponse, guessesLeft: VAULT_MAX_GUESSES - counted.guesses };
    },
    // A client that saw the password was wrong (OPAQUE tells it first) says so, so an exhausted
    // record is destroyed now rather than when its started logins expire.
    "login/abort": async (body) => {
      const login = await store.takeVaultLogin(body.loginId, now());
      if (login && (await store.vaultLoginFailed(login.vaultId, VAULT_MAX_GUESSES, now()))) {
        logger.warn("backup vault record destroyed after too many guesses");
      }
      return {};
    },
    "login/finish": async (body) => {
      const login = await store.takeVaultLogin(body.loginId, now());
      if (!login) throw new ServerError("NotFound", "no such login (unknown, used or expired)");
      let ok = true;
      try {
        opaque.server.finishLogin({
          serverLoginState: login.state,
          finishLoginRequest: body.finishLoginRequest,
        });
      } catch {
        ok = false;
      }
      if (!ok) {
        if (await store.vaultLoginFailed(login.vaultId, VAULT_MAX_GUESSES, now())) {
          logger.warn("backup vault record destroyed after too many guesses");
        }
        throw new ServerError("Unauthorized", "login failed");
      }
      const released = await store.vaultLoginSucceeded(login.vaultId);
      if (!released) throw new ServerError("NotFound", "no such vault record");
      if (body.delete === true) {
        await store.deleteVaultRecord(login.vaultId);
        logger.info("backup vault record deleted by its owner");
        return {};
      }
      return { wrappedKey: Buffer.from(released.wrappedKey).toString("base64url") };
    },
  };

  return async (req, res) => {
    const route = (req.url ?? "").slice(VAULT_PATH.length) as Route;
    const send = (status: number, body: object) =>
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    try {
      if (req.method !== "POST") throw new ServerError("InvalidRequest", "use POST");
      if (!(route in requests)) throw new ServerError("NotFound", "no such vault route");
      await opaque.ready;
      const raw = await readBody(req);
      let parsed: unknown;
      try {
        parsed = requests[route].parse(JSON.parse(raw));
      } catch {
        throw new ServerError("InvalidRequest", "malformed vault request");
      }
      const handler = handlers[route] as (body: unknown) => Promise<object>;
      send(200, await handler(parsed));
    } catch (err) {
      const code: ServerErrorCode = ServerError.is(err)
        ? err.code
        : isOpaqueFailure(err)
          ? "InvalidRequest"
          : "Internal";
      if (code === "Internal") logger.error({ err }, "backup vault request failed");
      send(STATUS[code] ?? 500, { error: code });
    }
  };
}

function isOpaqueFailure(err: unknown): boolean {
  // The OPAQUE library throws plain errors for undecodable protocol messages.
  return err instanceof Error && !ServerError.is(err);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new ServerError("PayloadTooLarge", "vault request too large");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}
