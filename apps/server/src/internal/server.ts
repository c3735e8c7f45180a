import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createWebSocketAcceptor } from "@pairwise/transport/websocket";
import {
  generateNoiseKeyPair,
  noiseKeyPairFromPrivateKey,
  noiseResponder,
  type NoiseKeyPair,
} from "@pairwise/transport";
import type { Logger } from "pino";
import type { ServerConfig } from "./config.ts";
import { submissionKeys } from "./dedup-key.ts";
import { ServerError } from "./errors.ts";
import { VAULT_PATH, createVaultHandler, loadVaultSetup } from "./handlers/backup-vault.ts";
import { Relay } from "./relay.ts";
import type { BlobStorage } from "./blob-storage.ts";
import type { ClusterBus } from "./cluster-bus.ts";
import type { PgServerStore } from "./store/pg-server-store.ts";
import { openSqliteServerStore } from "./store/sqlite-server-store.ts";
import type { ServerStore } from "./store/server-store.ts";
import { startFederation, type RunningFederation } from "./federation-listener.ts";
import type { FederationOptions } from "@pairwise/interop-adapters/federation";

/** A running relay server. */
export interface RunningServer {
  /** `ws://host:port` */
  url: string;
  port: number;
  /** The server's Noise static public key (clients pin it). */
  publicKey: Uint8Array;
  relay: Relay;
  /** With `provider` configured: the federation listener and links to partner providers. */
  federation?: RunningFederation;
  /** Graceful shutdown: stop accepting, finish in-flight requests, close the database. */
  close(): Promise<void>;
}

/** Options of {@link startServer}. */
export interface StartServerOptions {
  config: ServerConfig;
  logger: Logger;
  /** A store to use instead of SQLite in `config.dataDir` (e.g. PostgreSQL). */
  store?: ServerStore;
  /** Blob storage to use instead of what `config.blobs` names. */
  blobs?: BlobStorage;
  now?: () => number;
  /** Federation hooks for audits and tests: see every link frame, declare another protocol. */
  federation?: Pick<FederationOptions, "onFrame" | "declare" | "retryMs" | "capabilities">;
}

/** Loads the server's Noise static key from the data dir, creating it on first start. */
export function loadServerKey(dataDir: string): NoiseKeyPair {
  const path = join(dataDir, "server-key.json");
  try {
    const raw = JSON.parse(readFileSync(path, "utf8")) as { privateKey?: unknown };
    if (typeof raw.privateKey !== "string")
      throw new ServerError("InvalidRequest", "server key file is malformed");
    return noiseKeyPairFromPrivateKey(Buffer.from(raw.privateKey, "base64url"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new ServerError("InvalidRequest", `cannot read the server key in ${dataDir}`);
    }
  }
  const pair = generateNoiseKeyPair();
  writeFileSync(
    path,
    JSON.stringify({ privateKey: Buffer.from(pair.privateKey).toString("base64url") }),
    { mode: 0o600, flag: "wx" },
  );
  return pair;
}

/**
 * Starts the relay: SQLite store and blobs in the data dir (unless a store is given), the Noise
 * static key, an HTTP server with `/healthz`, `/metrics`, `/server-key` and the backup key vault
 * (`/backup-vault/v1/…`), and WebSocket upgrades carrying Noise XX to every device. Resolves
 * once listening.
 */
export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const { config, logger } = options;
  mkdirSync(config.dataDir, { recursive: true });
  const staticKeyPair = loadServerKey(config.dataDir);
  let pgStore: PgServerStore | undefined;
  const store =
    options.store ??
    (config.store === "sqlite"
      ? openSqliteServerStore({ path: join(config.dataDir, "relay.db"), logger })
      : // PostgreSQL, NATS and S3 clients load only when configured: the embedded default
        // starts without them.
        (pgStore = await (
          await import("./store/pg-server-store.ts")
        ).openPgServerStore({
          connectionString: config.store,
          schema: config.pgSchema,
          logger,
        })));
  let bus: ClusterBus | undefined;
  if (config.bus) {
    try {
      bus = await (await import("./cluster-bus.ts")).connectClusterBus(config.bus, logger);
    } catch (err) {
      await store.close();
      throw err;
    }
  }
  const blobs =
    options.blobs ??
    (config.blobs === "disk"
      ? undefined
      : new (await import("./s3-blob-storage.ts")).S3BlobStorage({
          url: config.blobs,
          spoolDir: join(config.dataDir, "blob-uploads"),
          maxBytes: config.maxBlobBytes,
          region: config.s3Region,
          ...(config.s3Endpoint ? { endpoint: config.s3Endpoint } : {}),
        }));
  const relay = new Relay({
    store,
    config,
    logger,
    blobDir: join(config.dataDir, "blobs"),
    ...(blobs ? { blobs } : {}),
    ...(bus ? { bus } : {}),
    ...(options.now ? { now: options.now } : {}),
    submissionKey: submissionKeys(staticKeyPair.privateKey),
  });
  let federation: RunningFederation | undefined;
  if (config.provider) {
    try {
      federation = await startFederation({
        config,
        provider: config.provider,
        ctx: relay.context,
        staticKeyPair,
        logger,
        ...(options.federation ?? {}),
      });
    } catch (err) {
      await relay.close();
      await bus?.close();
      await store.close();
      throw err;
    }
  }
  const pool = pgStore;
  if (pool) relay.metrics.watchPool(() => pool.poolStats());
  if (bus) relay.metrics.watchBus(() => bus.rttMs());

  const vault = createVaultHandler({
    store,
    serverSetup: await loadVaultSetup(config.dataDir),
    logger,
    ...(options.now ? { now: options.now } : {}),
  });

  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      if (req.url?.startsWith(VAULT_PATH)) {
        await vault(req, res);
        return;
      }
      if (req.method !== "GET") {
        res.writeHead(405).end();
        return;
      }
      if (req.url === "/healthz") {
        // Each dependency is reported; any one down makes the node unhealthy (503).
        const database = await store.ping().then(
          () => ({ ok: true as boolean, ...(pgStore ? { pool: pgStore.poolStats() } : {}) }),
          () => ({ ok: false as boolean }),
        );
        const busHealth = bus
          ? await bus.rttMs().then(
              (rttMs) => ({ ok: true as boolean, rttMs }),
              () => ({ ok: false as boolean }),
            )
          : undefined;
        const ok = database.ok && (busHealth?.ok ?? true);
        res.writeHead(ok ? 200 : 503, { "content-type": "application/json" }).end(
          JSON.stringify({
            status: ok ? "ok" : "unavailable",
            connections: relay.connectionCount,
            store: options.store ? "custom" : config.store === "sqlite" ? "sqlite" : "postgres",
            database,
            ...(busHealth ? { bus: busHealth } : {}),
          }),
        );
      } else if (req.url === "/metrics") {
        const body = await relay.metrics.registry.metrics();
        res.writeHead(200, { "content-type": relay.metrics.registry.contentType }).end(body);
      } else if (req.url === "/server-key") {
        res
          .writeHead(200, { "content-type": "text/plain" })
          .end(Buffer.from(staticKeyPair.publicKey).toString("base64url"));
      } else {
        res.writeHead(404).end();
      }
    })().catch(() => res.writeHead(500).end());
  });

  const acceptor = await createWebSocketAcceptor({
    server: http,
    maxFrameBytes: config.maxFrameBytes,
    maxConnections: config.maxConnections,
    onConnection: (transport) => {
      noiseResponder(transport, { staticKeyPair }).then(
        (secure) => relay.handle(secure),
        () => undefined, // a failed handshake already closed the transport
      );
    },
  });

  await new Promise<void>((resolve, reject) => {
    http.once("error", (err) =>
      reject(
        new ServerError(
          "Unavailable",
          `cannot listen on ${config.host}:${config.port}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
        ),
      ),
    );
    http.listen(config.port, config.host, () => resolve());
  });
  const port = (http.address() as AddressInfo).port;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  logger.info({ port }, "relay listening");

  let closing: Promise<void> | undefined;
  return {
    url: `ws://${host}:${port}`,
    port,
    publicKey: staticKeyPair.publicKey,
    relay,
    ...(federation ? { federation } : {}),
    close() {
      closing ??= (async () => {
        // Stop accepting first, then let in-flight requests finish, then close the database.
        const httpClosed = new Promise<void>((resolve) => http.close(() => resolve()));
        await acceptor.close();
        await federation?.close();
        await relay.close();
        http.closeAllConnections();
        await httpClosed;
        await bus?.close();
        await store.close();
      })();
      return closing;
    },
  };
}
