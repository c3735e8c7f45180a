// Idle authenticated devices for the relay bench, in a process of their own: the server holds
// their connections through the load, as it would hold a real population's, while the load's
// process keeps only Alice and Bob. Kept in the load's process, these devices' key stores and
// connections were most of its heap (56.0 MB before the load against 24.3 MB without them), and
// that heap's major collections lined up with the worst latency windows.
//
// Usage: relay-idle.ts URL SERVER_KEY(base64url) COUNT. Registers COUNT accounts (each a primary
// device), closes their connections and prints "registered COUNT"; then each stdin line
// "connect N" opens the next N connections and prints "connected TOTAL" once they are
// authenticated. Closes them all and exits when stdin ends.
import { createInterface } from "node:readline";
import type { RelayConnection } from "@pairwise/client";
import type { NoiseKeyPair } from "@pairwise/transport";
import { TestDevice, connect } from "../apps/server/test/support.ts";
import type { RelayEndpoint } from "./relay-load.ts";

const [url, key, countText] = process.argv.slice(2);
const count = Number(countText);
if (!url || !key || !Number.isInteger(count) || count < 1) {
  throw new Error("usage: relay-idle.ts URL SERVER_KEY COUNT");
}
const server = { url, publicKey: new Uint8Array(Buffer.from(key, "base64url")) } as RelayEndpoint;

// Only the Noise keys outlive registration: an idle device needs nothing else here.
const keys: NoiseKeyPair[] = [];
for (let i = 0; i < count; i++) {
  const d = await TestDevice.register(server, `idle-${i}`, { oneTime: 1 });
  await d.conn.close();
  keys.push(d.noiseKeys);
}
process.stdout.write(`registered ${count}\n`);

const open: RelayConnection[] = [];
const commands = createInterface({ input: process.stdin });
for await (const command of commands) {
  const m = /^connect (\d+)$/.exec(command);
  if (!m) throw new Error("relay-idle: unknown command");
  const n = Number(m[1]);
  if (open.length + n > count) throw new Error("relay-idle: more connections than devices");
  for (const k of keys.slice(open.length, open.length + n)) open.push(await connect(server, k));
  process.stdout.write(`connected ${open.length}\n`);
}
for (const c of open) await c.close().catch(() => undefined);
