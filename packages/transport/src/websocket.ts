// @pairwise/transport/websocket: WebSocket client connector and server acceptor (needs `ws`).
export { websocketConnector, type WebSocketConnectorOptions } from "./internal/websocket-client.ts";
export {
  createWebSocketAcceptor,
  type WebSocketAcceptor,
  type WebSocketAcceptorOptions,
  type WebSocketConnectionInfo,
} from "./internal/websocket-acceptor.ts";
export type { WebSocketTransportOptions } from "./internal/websocket-transport.ts";
