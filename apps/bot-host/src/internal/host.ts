import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import pino, { type Logger } from "pino";
import QRCode from "qrcode";
import type { PasskeyWeb } from "@pairwise/backup/passkey-web";
import { backupPage } from "./backup-page.ts";
import { BotBackups } from "./backups.ts";
import { Bot, describeError, type BotSnapshot } from "./bot.ts";
import type { BotHostConfig } from "./config.ts";
import { dashboardPage, loginPage, type BotView } from "./dashboard-page.ts";
import { BotHostError } from "./errors.ts";
import { renderMetrics } from "./metrics.ts";
import { loadPlugin } from "./plugin-loader.ts";
import type { Plugin } from "./plugin.ts";

/** Options of {@link startBotHost}. */
export interface StartBotHostOptions {
  config: BotHostConfig;
  /** Default: pino to stderr at the config's level. */
  logger?: Logger;
  /** Extra plugins by bot name, added after the configured ones (for embedding and tests). */
  extraPlugins?: Record<string, readonly Plugin[]>;
  now?: () => number;
  /** Delay of each bot's first scheduled backup after it is connected (default 10 s). */
  backupStartDelayMs?: number;
}

/** A running host: its bots and its HTTP server (dashboard, metrics, plugin endpoints). */
export interface RunningBotHost {
  /** The HTTP server's base URL, e.g. `http://127.0.0.1:8790`. */
  url: string;
  bots: readonly Bot[];
  /** A bot by name, or `BotHostError("NotFound")`. */
  bot(name: string): Bot;
  snapshot(): BotSnapshot[];
  /** Graceful stop: in-flight messages drain, then bots and the server close. */
  stop(): Promise<void>;
}

const SESSION_COOKIE = "pairwise_bot_host";
const MAX_FORM = 4096;

const digest = (s: string) => createHash("sha256").update(s).digest();

/**
 * Loads every bot's plugins (failing before anything starts if one is bad), starts the HTTP
 * server and the bots. Throws `BotHostError` ("PluginLoadFailed", "StorageFailure", or
 * "InvalidConfig" when the port cannot be bound).
 */
export async function startBotHost(options: StartBotHostOptions): Promise<RunningBotHost> {
  const { config } = options;
  const logger =
    options.logger ??
    pino({ level: config.logLevel, base: { app: "pairwise-bot-host" } }, pino.destination(2));
  const bots: Bot[] = [];
  for (const b of config.bots) {
    const plugins: Plugin[] = [];
    for (const spec of b.plugins)
      plugins.push(await loadPlugin(spec, config.baseDir, `bot ${b.name}`));
    plugins.push(...(options.extraPlugins?.[b.name] ?? []));
    const names = plugins.map((p) => p.name);
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup)
      throw new BotHostError("PluginLoadFailed", `bot ${b.name}: plugin ${dup} is listed twice`);
    bots.push(
      new Bot({
        settings: {
          name: b.name,
          server: b.server,
          stateDir: b.stateDir,
          deviceName: b.deviceName,
          concurrency: b.concurrency,
          deliveryReceipts: b.deliveryReceipts,
        },
        plugins,
        logger,
        ...(options.now ? { now: options.now } : {}),
      }),
    );
  }
  const byName = new Map(bots.map((b) => [b.settings.name, b]));
  const backups = new Map<string, BotBackups>();
  for (const [i, b] of config.bots.entries()) {
    const bot = bots[i];
    if (!b.backup || !bot) continue;
    backups.set(
      b.name,
      new BotBackups({
        bot,
        config: b.backup,
        logger,
        ...(options.backupStartDelayMs === undefined
          ? {}
          : { startDelayMs: options.backupStartDelayMs }),
        ...(options.now ? { now: options.now } : {}),
      }),
    );
  }
  // The passkey page (enrol, unlock) is mounted once the origin is known (after listen).
  let passkeyWeb: PasskeyWeb | undefined;
  const tokenDigest = digest(config.adminToken);
  const sessions = new Set<string>();
  const qrCache = new Map<string, string>();
  const streams = new Set<ServerResponse>();

  const views = async (): Promise<BotView[]> =>
    Promise.all(
      bots.map(async (b) => {
        const backup = backups.get(b.settings.name)?.snapshot();
        const s = { ...b.snapshot(), ...(backup ? { backup } : {}) };
        if (!s.linkCode) return s;
        let svg = qrCache.get(s.linkCode);
        if (!svg) {
          svg = await QRCode.toString(s.linkCode, {
            type: "svg",
            errorCorrectionLevel: "M",
            margin: 2,
          });
          if (qrCache.size > 1000) qrCache.clear();
          qrCache.set(s.linkCode, svg);
        }
        return { ...s, qrSvg: svg };
      }),
    );

  const validToken = (t: string | undefined) =>
    t !== undefined && timingSafeEqual(digest(t), tokenDigest);
  const cookie = (req: IncomingMessage) =>
    /(?:^|;\s*)pairwise_bot_host=([A-Za-z0-9_-]+)/.exec(req.headers.cookie ?? "")?.[1];
  const authed = (req: IncomingMessage) => {
    const auth = req.headers.authorization;
    if (auth?.startsWith("Bearer ")) return validToken(auth.slice(7));
    const c = cookie(req);
    return c !== undefined && sessions.has(c);
  };
  const startSession = (res: ServerResponse) => {
    const id = randomBytes(24).toString("base64url");
    sessions.add(id);
    res.writeHead(303, {
      location: "/",
      "set-cookie": `${SESSION_COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/`,
    });
    res.end();
  };

  // Live updates: a change marks the stream dirty; one snapshot goes out per tick.
  let pushTimer: NodeJS.Timeout | undefined;
  const pushViews = () => {
    pushTimer ??= setTimeout(() => {
      pushTimer = undefined;
      if (streams.size === 0) return;
      void views().then((v) => {
        const frame = `event: bots\ndata: ${JSON.stringify(v)}\n\n`;
        for (const s of streams) s.write(frame);
      });
    }, 100);
  };
  for (const b of bots) b.on("change", pushViews);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://host");
    const path = url.pathname;
    if (req.method === "GET" && path === "/healthz") {
      const states = Object.fromEntries(bots.map((b) => [b.settings.name, b.currentState]));
      res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ status: "ok", bots: states }));
      return;
    }
    const plugin = /^\/bots\/([a-z0-9-]+)(\/[a-z0-9._-]+\/[a-z0-9/_-]*)$/.exec(path);
    if (plugin) {
      const route = byName
        .get(plugin[1] ?? "")
        ?.routes.get(`${req.method ?? ""} ${plugin[2] ?? ""}`);
      if (!route) {
        res.writeHead(404, { "content-type": "application/json" }).end('{"error":"NotFound"}');
        return;
      }
      await route(req, res);
      return;
    }
    if (path === "/" && req.method === "GET" && url.searchParams.has("token")) {
      if (validToken(url.searchParams.get("token") ?? undefined)) startSession(res);
      else res.writeHead(401, { "content-type": "text/html; charset=utf-8" }).end(loginPage(true));
      return;
    }
    if (path === "/login" && req.method === "POST") {
      let body = "";
      for await (const chunk of req) {
        body += String(chunk);
        if (body.length > MAX_FORM) break;
      }
      if (validToken(new URLSearchParams(body).get("token") ?? undefined)) startSession(res);
      else res.writeHead(401, { "content-type": "text/html; charset=utf-8" }).end(loginPage(true));
      return;
    }
    if (!authed(req)) {
      if (path === "/" && req.method === "GET")
        res.writeHead(401, { "content-type": "text/html; charset=utf-8" }).end(loginPage(false));
      else
        res
          .writeHead(401, { "content-type": "application/json", "www-authenticate": "Bearer" })
          .end('{"error":"Unauthorized"}');
      return;
    }
    if (req.method === "GET" && path === "/") {
      res
        .writeHead(200, {
          "content-type": "text/html; charset=utf-8",
          "cache-control": "no-store",
          "content-security-policy":
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'",
        })
        .end(dashboardPage(await views()));
      return;
    }
    if (passkeyWeb && path.startsWith("/passkey/") && (await passkeyWeb.handle(req, res))) return;
    const page = /^\/backup\/([a-z0-9-]+)$/.exec(path);
    const api = /^\/api\/bots\/([a-z0-9-]+)\/backup(?:\/([a-z-]+))?$/.exec(path);
    const backupsOf = backups.get(page?.[1] ?? api?.[1] ?? "");
    if ((page || api) && !backupsOf) {
      res
        .writeHead(404, { "content-type": "application/json" })
        .end('{"error":"NotFound","message":"no backup configured for this bot"}');
      return;
    }
    if (page && backupsOf && req.method === "GET") {
      res
        .writeHead(200, {
          "content-type": "text/html; charset=utf-8",
          "cache-control": "no-store",
          "content-security-policy":
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        })
        .end(backupPage(page[1] ?? ""));
      return;
    }
    if (api && backupsOf) {
      await backupAction(backupsOf, api[2], req, res);
      return;
    }
    if (req.method === "GET" && path === "/api/bots") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(await views()));
      return;
    }
    if (req.method === "GET" && path === "/metrics") {
      res
        .writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" })
        .end(renderMetrics(bots.map((b) => b.snapshot())));
      return;
    }
    if (req.method === "GET" && path === "/events") {
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        connection: "keep-alive",
      });
      res.write(`event: bots\ndata: ${JSON.stringify(await views())}\n\n`);
      streams.add(res);
      const beat = setInterval(() => res.write(": keep-alive\n\n"), 15_000);
      req.on("close", () => {
        clearInterval(beat);
        streams.delete(res);
      });
      return;
    }
    res.writeHead(404, { "content-type": "application/json" }).end('{"error":"NotFound"}');
  };

  const json = (res: ServerResponse, status: number, body: object) =>
    res
      .writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
      .end(JSON.stringify(body));

  /** The backup API of one bot (admin only; actions are JSON POSTs, which forms cannot send). */
  const backupAction = async (
    b: BotBackups,
    action: string | undefined,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> => {
    if (action === undefined && req.method === "GET") {
      json(res, 200, b.snapshot());
      return;
    }
    if (req.method !== "POST" || !req.headers["content-type"]?.startsWith("application/json")) {
      json(res, 405, { error: "MethodNotAllowed", message: "POST with a JSON body" });
      return;
    }
    req.resume();
    if (action === "run") {
      try {
        await b.backupNow();
        json(res, 200, b.snapshot());
      } catch {
        json(res, 502, { error: "BackupFailed", message: b.snapshot().lastError });
      }
      return;
    }
    if (action === "recovery-key" || action === "passkey" || action === "restore") {
      try {
        if (action === "recovery-key") {
          json(res, 200, { recoveryKey: await b.revealRecoveryKey() });
        } else if (!passkeyWeb) {
          json(res, 503, { error: "Unavailable" });
        } else if (action === "passkey") {
          json(res, 200, await b.enrolPasskey(passkeyWeb));
        } else {
          const started = await b.restoreWithPasskey(passkeyWeb);
          json(res, started.url ? 200 : 409, started);
        }
      } catch (err) {
        json(res, BotHostError.is(err, "NotConnected") ? 409 : 500, {
          error: BotHostError.is(err) ? err.code : "Internal",
          message: BotHostError.is(err) ? err.message : "internal error",
        });
      }
      return;
    }
    json(res, 404, { error: "NotFound" });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.error(
        { err: describeError(err), path: req.url?.split("?")[0] },
        "http request failed",
      );
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
      res.end('{"error":"Internal"}');
    });
  });
  await new Promise<void>((resolveListen, reject) => {
    server.once("error", (cause) =>
      reject(
        new BotHostError(
          "InvalidConfig",
          `cannot listen on ${config.http.host}:${config.http.port}`,
          { cause },
        ),
      ),
    );
    server.listen(config.http.port, config.http.host, () => resolveListen());
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.address.includes(":") ? `[${address.address}]` : address.address}:${address.port}`;
  if (backups.size > 0) {
    const origin = config.http.publicOrigin ?? `http://localhost:${String(address.port)}`;
    const { createPasskeyWeb } = await import("@pairwise/backup/passkey-web");
    passkeyWeb = createPasskeyWeb({
      rpId: new URL(origin).hostname,
      origin,
      rpName: "Pairwise bot host",
      basePath: "/passkey/",
    });
  }
  try {
    for (const b of bots) await b.start();
  } catch (err) {
    await Promise.all(bots.map((b) => b.stop()));
    server.close();
    throw err;
  }
  for (const b of backups.values()) b.start();
  logger.info({ url, bots: bots.length }, "bot host started");

  let stopped: Promise<void> | undefined;
  return {
    url,
    bots,
    bot(name) {
      const b = byName.get(name);
      if (!b) throw new BotHostError("NotFound", `no bot named ${name}`);
      return b;
    },
    snapshot: () => bots.map((b) => b.snapshot()),
    stop() {
      stopped ??= (async () => {
        await Promise.all([...backups.values()].map((b) => b.stop()));
        await Promise.all(bots.map((b) => b.stop()));
        clearTimeout(pushTimer);
        for (const s of streams) s.end();
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
        logger.info("bot host stopped");
      })();
      return stopped;
    },
  };
}
