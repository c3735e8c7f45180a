import { join } from "node:path";
import {
  createFederation,
  openSqliteFederationStore,
  type Federation,
  type FederationOptions,
} from "@pairwise/interop-adapters/federation";
import type { NoiseKeyPair } from "@pairwise/transport";
import { createWebSocketAcceptor } from "@pairwise/transport/websocket";
import type { Logger } from "pino";
import type { ServerConfig } from "./config.ts";
import type { RelayContext } from "./context.ts";
import { ServerError } from "./errors.ts";
import { attachInterop, federationHandler, type InteropService } from "./interop.ts";

/** The running federation side of a relay. */
export interface RunningFederation {
  /** `ws://host:port` of the federation listener (what partners put in their config). */
  url: string;
  port: number;
  federation: Federation;
  close(): Promise<void>;
}

/**
 * Starts federation: the privacy and outbox store (`interop.db` in the data dir), a link to each
 * allow-listed partner (opened on demand), and a listener for partners' links. The provider key
 * is the server's Noise static key.
 */
export async function startFederation(options: {
  config: ServerConfig;
  provider: string;
  ctx: RelayContext;
  staticKeyPair: NoiseKeyPair;
  logger: Logger;
  onFrame?: FederationOptions["onFrame"];
  declare?: FederationOptions["declare"];
  retryMs?: FederationOptions["retryMs"];
  capabilities?: FederationOptions["capabilities"];
}): Promise<RunningFederation> {
  const { config, ctx } = options;
  const store = openSqliteFederationStore(join(config.dataDir, "interop.db"));
  const box: { service?: InteropService } = {};
  const federation = createFederation({
    provider: options.provider,
    staticKeyPair: options.staticKeyPair,
    partners: config.partners.map((p) => ({
      name: p.name,
      url: p.url,
      publicKey: new Uint8Array(Buffer.from(p.publicKey, "base64url")),
    })),
    approvedProtocols: config.approvedProtocols,
    store,
    handler: federationHandler(ctx, () => {
      if (!box.service) throw new ServerError("Unavailable", "federation is starting");
      return box.service;
    }),
    logger: options.logger,
    now: ctx.now,
    ...(options.onFrame ? { onFrame: options.onFrame } : {}),
    ...(options.declare ? { declare: options.declare } : {}),
    ...(options.retryMs ? { retryMs: options.retryMs } : {}),
    ...(options.capabilities ? { capabilities: options.capabilities } : {}),
  });
  box.service = { provider: options.provider, federation, store };
  attachInterop(ctx, box.service);
  let acceptor;
  try {
    acceptor = await createWebSocketAcceptor({
      host: config.federationHost,
      port: config.federationPort,
      maxFrameBytes: config.maxFrameBytes,
      onConnection: (raw) => federation.accept(raw),
    });
  } catch (err) {
    await federation.close();
    store.close();
    throw new ServerError(
      "Unavailable",
      `cannot listen for federation on ${config.federationHost}:${config.federationPort}`,
      { cause: err },
    );
  }
  await federation.start();
  const host = config.federationHost.includes(":")
    ? `[${config.federationHost}]`
    : config.federationHost;
  options.logger.info({ port: acceptor.port, provider: options.provider }, "federation listening");
  return {
    url: `ws://${host}:${acceptor.port}`,
    port: acceptor.port,
    federation,
    async close() {
      await acceptor.close();
      await federation.close();
      store.close();
    },
  };
}
