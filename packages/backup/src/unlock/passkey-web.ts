import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type RegistrationResponseJSON,
} from "@simplewebauthn/server";
import { BackupError } from "../internal/errors.ts";
import { createPasskeySalt, type PasskeyPrf, type PasskeyPrfResult } from "../internal/keyring.ts";
import { passkeyPage } from "../internal/passkey-page.ts";

/** What enrolling a passkey yields: everything `addPasskeySlot` takes. */
export interface PasskeyEnrolment {
  readonly credentialId: Uint8Array;
  readonly salt: Uint8Array;
  readonly prfOutput: Uint8Array;
  readonly publicKey: Uint8Array;
}

/** A ceremony waiting for the user: open `url` in a browser; `result` settles when it is done. */
export interface PasskeyRequest<T> {
  /** Path and query of the page (relative to the server's origin). */
  readonly url: string;
  readonly result: Promise<T>;
}

/** Options of {@link createPasskeyWeb}. */
export interface PasskeyWebOptions {
  /** The WebAuthn relying party id: the page's host name (e.g. `localhost`, `bots.example.com`). */
  readonly rpId: string;
  /** The exact origin the page is served from (`https://bots.example.com`, `http://localhost:8080`). */
  readonly origin: string;
  readonly rpName?: string;
  /** Where the page and its API are mounted (default `/passkey/`). */
  readonly basePath?: string;
  /** How long a ceremony may wait for the user (default 5 minutes). */
  readonly timeoutMs?: number;
}

/** The passkey page as a mountable HTTP handler. */
export interface PasskeyWeb {
  /** Handles a request under `basePath`; resolves false (untouched) for any other path. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<boolean>;
  /** Starts enrolling a new passkey for `userName`. */
  enrol(userName: string): PasskeyRequest<PasskeyEnrolment>;
  /** Starts an unlock: the PRF output of one of these slot credentials. */
  unlock(credentials: Parameters<PasskeyPrf>[0]): PasskeyRequest<PasskeyPrfResult>;
}

type Session =
  | {
      mode: "enrol";
      userName: string;
      challenge?: string;
      credential?: { id: string; publicKey: Uint8Array };
      salt: Uint8Array;
      authChallenge?: string;
      settle: Settle<PasskeyEnrolment>;
    }
  | {
      mode: "unlock";
      credentials: Parameters<PasskeyPrf>[0];
      authChallenge?: string;
      settle: Settle<PasskeyPrfResult>;
    };

interface Settle<T> {
  resolve(value: T): void;
  reject(err: BackupError): void;
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64url");
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, "base64url"));

/**
 * The browser side of passkey slots: a small page (enrol and unlock) plus its JSON API, meant to
 * be mounted by the process that holds the backup (the bot host's dashboard, or
 * {@link startPasskeyWeb} for a standalone one). Every ceremony asks for
 * `userVerification: "required"` (authenticators return no PRF result without it) and is
 * verified server-side with `@simplewebauthn/server` (registration, then an assertion with the
 * PRF extension, using the public key kept in the slot). Ceremonies fail with
 * `BackupError("PasskeyFailed")` when the browser reports an error, verification fails, there
 * is no PRF result, or the user does not finish in time.
 */
export function createPasskeyWeb(options: PasskeyWebOptions): PasskeyWeb {
  const base = options.basePath ?? "/passkey/";
  const timeoutMs = options.timeoutMs ?? 5 * 60_000;
  const sessions = new Map<string, Session>();

  const open = <T>(make: (settle: Settle<T>) => Session): PasskeyRequest<T> => {
    const id = randomBytes(16).toString("hex");
    const result = new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        sessions.delete(id);
        reject(new BackupError("PasskeyFailed", "the passkey ceremony timed out"));
      }, timeoutMs);
      timer.unref();
      const settle: Settle<T> = {
        resolve: (v) => {
          clearTimeout(timer);
          sessions.delete(id);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          sessions.delete(id);
          reject(e);
        },
      };
      sessions.set(id, make(settle));
    });
    return { url: `${base}?session=${id}`, result };
  };

  const assertionOptions = async (
    session: Session,
    creds: ReadonlyArray<{ credentialId: Uint8Array; salt: Uint8Array }>,
  ) => {
    const opts = await generateAuthenticationOptions({
      rpID: options.rpId,
      allowCredentials: creds.map((c) => ({ id: b64(c.credentialId) })),
      userVerification: "required",
      timeout: timeoutMs,
    });
    session.authChallenge = opts.challenge;
    return {
      challenge: opts.challenge,
      rpId: options.rpId,
      timeout: timeoutMs,
      allowCredentials: creds.map((c) => ({ id: b64(c.credentialId) })),
      prf: creds.map((c) => ({ credentialId: b64(c.credentialId), salt: b64(c.salt) })),
    };
  };

  const routes: Record<
    string,
    (session: Session, body: Record<string, unknown>) => Promise<object>
  > = {
    session: async (session) => {
      if (session.mode === "unlock") {
        return {
          mode: "unlock",
          authentication: await assertionOptions(session, session.credentials),
        };
      }
      const registration = await generateRegistrationOptions({
        rpName: options.rpName ?? "Pairwise backup",
        rpID: options.rpId,
        userName: session.userName,
        attestationType: "none",
        authenticatorSelection: { residentKey: "preferred", userVerification: "required" },
        timeout: timeoutMs,
      });
      session.challenge = registration.challenge;
      return { mode: "enrol", registration };
    },
    enrol: async (session, body) => {
      if (session.mode !== "enrol" || session.challenge === undefined) throw refused();
      const verified = await verifyRegistrationResponse({
        response: body.response as RegistrationResponseJSON,
        expectedChallenge: session.challenge,
        expectedOrigin: options.origin,
        expectedRPID: options.rpId,
        requireUserVerification: true,
      });
      if (!verified.verified) throw refused();
      const { credential } = verified.registrationInfo;
      session.credential = { id: credential.id, publicKey: credential.publicKey };
      return {
        authentication: await assertionOptions(session, [
          { credentialId: unb64(credential.id), salt: session.salt },
        ]),
      };
    },
    prf: async (session, body) => {
      const response = body.response as AuthenticationResponseJSON;
      const known =
        session.mode === "enrol"
          ? session.credential && {
              credentialId: unb64(session.credential.id),
              publicKey: session.credential.publicKey,
            }
          : session.credentials.find((c) => b64(c.credentialId) === response.id);
      if (!known || session.authChallenge === undefined || known.publicKey.length === 0)
        throw refused();
      const verified = await verifyAuthenticationResponse({
        response,
        expectedChallenge: session.authChallenge,
        expectedOrigin: options.origin,
        expectedRPID: options.rpId,
        credential: {
          id: b64(known.credentialId),
          publicKey: new Uint8Array(known.publicKey),
          counter: 0,
        },
        requireUserVerification: true,
      });
      const output = typeof body.prfOutput === "string" ? unb64(body.prfOutput) : undefined;
      if (!verified.verified || !output || output.length !== 32) throw refused();
      if (session.mode === "enrol") {
        session.settle.resolve({
          credentialId: known.credentialId,
          salt: session.salt,
          prfOutput: output,
          publicKey: known.publicKey,
        });
      } else {
        session.settle.resolve({ credentialId: known.credentialId, output });
      }
      return { ok: true };
    },
    fail: (session) => {
      session.settle.reject(
        new BackupError("PasskeyFailed", "the browser reported a passkey failure"),
      );
      return Promise.resolve({ ok: true });
    },
  };

  return {
    async handle(req, res) {
      const url = new URL(req.url ?? "/", "http://x");
      if (!url.pathname.startsWith(base)) return false;
      const send = (status: number, body: object) =>
        res
          .writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
          .end(JSON.stringify(body));
      if (req.method === "GET" && url.pathname === base) {
        res
          .writeHead(200, {
            "content-type": "text/html; charset=utf-8",
            "cache-control": "no-store",
            "content-security-policy":
              "default-src 'none'; script-src 'unsafe-inline'; connect-src 'self'",
          })
          .end(passkeyPage(base));
        return true;
      }
      const route = routes[url.pathname.slice(base.length)];
      if (req.method !== "POST" || !route) {
        send(404, { error: "NotFound" });
        return true;
      }
      let session: Session | undefined;
      try {
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const c of req) {
          size += (c as Buffer).length;
          if (size > 64 * 1024) throw refused();
          chunks.push(c as Buffer);
        }
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
        session = typeof body.session === "string" ? sessions.get(body.session) : undefined;
        if (!session) {
          send(404, { error: "NoSession" });
          return true;
        }
        send(200, await route(session, body));
      } catch (err) {
        const failure = BackupError.is(err)
          ? err
          : new BackupError("PasskeyFailed", "passkey verification failed", { cause: err });
        session?.settle.reject(failure);
        send(400, { error: "PasskeyFailed" });
      }
      return true;
    },
    enrol: (userName) =>
      open<PasskeyEnrolment>((settle) => ({
        mode: "enrol",
        userName,
        salt: createPasskeySalt(),
        settle,
      })),
    unlock: (credentials) =>
      open<PasskeyPrfResult>((settle) => ({ mode: "unlock", credentials, settle })),
  };
}

function refused(): BackupError {
  return new BackupError("PasskeyFailed", "passkey verification failed");
}

/** A standalone passkey page on its own HTTP server (loopback by default). */
export interface RunningPasskeyWeb extends PasskeyWeb {
  /** The server's origin, e.g. `http://localhost:41234`. */
  readonly origin: string;
  /** A {@link PasskeyPrf} that opens each unlock page through `openPage(absoluteUrl)`. */
  prf(openPage: (url: string) => void | Promise<void>): PasskeyPrf;
  close(): Promise<void>;
}

/**
 * Starts {@link createPasskeyWeb} on `http://localhost:PORT` (port 0: the OS picks), with the
 * RP id `localhost` (a secure context without TLS). For a CLI or tests; a dashboard mounts
 * `handle` instead.
 */
export async function startPasskeyWeb(
  options: { port?: number; host?: string; rpName?: string; timeoutMs?: number } = {},
): Promise<RunningPasskeyWeb> {
  // The handler needs the origin, which is known only once the server listens.
  const mounted: { web?: PasskeyWeb } = {};
  const server = createServer((req, res) => {
    void (async () => {
      if (!mounted.web || !(await mounted.web.handle(req, res))) res.writeHead(404).end();
    })().catch(() => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const origin = `http://localhost:${String((server.address() as AddressInfo).port)}`;
  const created = createPasskeyWeb({
    rpId: "localhost",
    origin,
    ...(options.rpName === undefined ? {} : { rpName: options.rpName }),
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  });
  mounted.web = created;
  return {
    ...created,
    origin,
    prf: (openPage) => async (credentials) => {
      const request = created.unlock(credentials);
      // The ceremony can fail while openPage is still running: that is the result, not an
      // unhandled rejection.
      request.result.catch(() => undefined);
      await openPage(origin + request.url);
      return request.result;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
