// The floor for `npm run bench -- relay`: a plain `ws` relay that forwards every frame from the
// first connected socket to the second, with nothing else (no crypto, no storage). Prints
// `listening on <port>` when ready.
import { WebSocketServer, type WebSocket } from "ws";

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
const sockets: WebSocket[] = [];
wss.on("connection", (ws) => {
  sockets.push(ws);
  ws.on("message", (data: Buffer) => {
    const other = sockets[0] === ws ? sockets[1] : sockets[0];
    other?.send(data);
  });
});
wss.on("listening", () => {
  const address = wss.address();
  process.stdout.write(
    `listening on ${typeof address === "string" ? address : String(address?.port)}\n`,
  );
});
