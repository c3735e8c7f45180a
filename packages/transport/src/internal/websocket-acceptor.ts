import { createServer, type IncomingMessage, type Server } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import { checkInteger } from "./limits.ts";
import type { Transport } from "./transport.ts";
import {
  webSocketSettings,
  wrapWebSocket,
  type WebSocketTransportOptions,
} from "./websocket-transport.ts";

/** What the acceptor knows about an accepted connection (from the HTTP upgrade request). */
export interface WebSocketConnectionInfo {
  /** The peer's IP address as the socket reports it. */
  readonly remoteAddress: string | undefined;
  /** Request path and query. */
  readonly url: string;
  /** The upgrade request's headers. */
  readonly headers: IncomingMessage["headers"];
}

/** Options of {@link createWebSocketAcceptor}. */
export interface WebSocketAcceptorOptions extends WebSocketTransportOptions {
  /**
   * Called once per accepted connection with its raw transport (the server then runs
   * `noiseResponder` on it). A rejected promise closes that transport.
   */
  readonly onConnection: (transport: Transport, info: WebSocketConnectionInfo) => unknown;
  /** Attach to this HTTP server's `upgrade` event instead of creating one (not closed by us). */
  readonly server?: Server;
  /** Interface to listen on when no `server` is given (default `127.0.0.1`). */
  readonly host?: string;
  /** Port to listen on when no `server` is given (default 0: the OS chooses). */
  readonly port?: number;
  /** Accept upgrades only on this path (default: any path). */
  readonly path?: string;
  /** Open connections at most; further upgrades get HTTP 503 (default 10 000). */
  readonly maxConnections?: number;
}

/** A running WebSocket acceptor. */
export interface WebSocketAcceptor {
  /** The port the HTTP server listens on (0 while a given `server` is not listening yet). */
  readonly port: number;
  /** Connections currently open. */
  readonly connectionCount: number;
  /**
   * Stops accepting, closes every open connection (code 1001) and, if the acceptor created the
   * HTTP server, closes it. Resolves when all of that is done.
   */
  close(): Promise<void>;
}

function refuse(socket: Duplex, status: string): void {
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => {
    socket.destroy();
  });
}

/**
 * Accepts WebSocket upgrades and hands each connection, as a raw {@link Transport}, to
 * `onConnection`. Creates and listens on an HTTP server unless `server` is given. Compression
 * is off; frames over `maxFrameBytes` close the connection with code 1009.
 *
 * Throws `TransportError("InvalidArgument")` for bad options, or the listen error (e.g.
 * `EADDRINUSE`) when the port cannot be bound.
 */
export async function createWebSocketAcceptor(
  options: WebSocketAcceptorOptions,
): Promise<WebSocketAcceptor> {
  const settings = webSocketSettings(options);
  const maxConnections = checkInteger(
    "maxConnections",
    options.maxConnections ?? 10_000,
    1,
    10_000_000,
  );
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: settings.maxFrameBytes,
    perMessageDeflate: false,
    clientTracking: false,
  });
  const open = new Set<Transport>();
  let accepting = true;

  // Defined apart from onUpgrade so the connection's long-lived closures do not share a scope
  // with (and so keep alive) the upgrade request, its socket wrapper and its first bytes.
  const accept = (ws: WebSocket, info: WebSocketConnectionInfo): void => {
    const transport = wrapWebSocket(ws, settings);
    if (!accepting) {
      void transport.close("server shutting down");
      return;
    }
    open.add(transport);
    void transport.closed.then(() => open.delete(transport));
    Promise.resolve()
      .then(() => options.onConnection(transport, info))
      .catch(() => transport.close("internal error"));
  };

  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on("error", () => undefined);
    const path = new URL(request.url ?? "/", "http://localhost").pathname;
    if (options.path !== undefined && path !== options.path) {
      refuse(socket, "404 Not Found");
      return;
    }
    if (!accepting || open.size >= maxConnections) {
      refuse(socket, "503 Service Unavailable");
      return;
    }
    const info: WebSocketConnectionInfo = {
      remoteAddress: request.socket.remoteAddress,
      url: request.url ?? "/",
      headers: request.headers,
    };
    wss.handleUpgrade(request, socket, head, (ws) => accept(ws, info));
  };

  const ownServer = options.server === undefined;
  const server =
    options.server ??
    createServer((_request, response) => {
      response.writeHead(426, { Connection: "close", "Content-Length": "0" }).end();
    });
  server.on("upgrade", onUpgrade);
  if (ownServer) {
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      server.off("upgrade", onUpgrade);
      throw err;
    }
  }
  return {
    get port() {
      const address = server.address();
      return address !== null && typeof address === "object" ? address.port : 0;
    },
    get connectionCount() {
      return open.size;
    },
    async close() {
      accepting = false;
      server.off("upgrade", onUpgrade);
      await Promise.all([...open].map((t) => t.close("server shutting down")));
      if (ownServer) {
        await new Promise<void>((resolve) => {
          server.close(() => {
            resolve();
          });
          server.closeAllConnections();
        });
      }
    },
  };
}
