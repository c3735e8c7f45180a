// The webhook plugin against a real HTTP receiver: HMAC-signed deliveries, retries with backoff,
// a reply from the receiver, and the authenticated outbound endpoint. Plus auto-reply rules on a
// second bot of the same host.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { PairwiseDevice } from "@pairwise/client";
import type { RunningServer } from "@pairwise/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningBotHost } from "../src/index.ts";
import {
  signWebhookBody,
  verifyWebhookSignature,
  type WebhookEvent,
} from "../src/plugins/webhook.ts";
import { account, customer, linkBot, startHost, startRelay, until } from "./support.ts";

const SECRET = "webhook-secret-0123456789";
const TOKEN = "outbound-token-0123456789";

interface Delivery {
  body: string;
  signature: string | undefined;
  delivery: string | undefined;
}

let server: RunningServer;
let owner: PairwiseDevice;
let host: RunningBotHost;
let receiver: Server;
const deliveries: Delivery[] = [];
/** Status codes to answer, in order (then 200). */
const script: number[] = [];

const read = async (req: IncomingMessage) => {
  let body = "";
  for await (const c of req) body += String(c);
  return body;
};

beforeAll(async () => {
  receiver = createServer((req, res) => {
    void read(req).then((body) => {
      const sig = req.headers["x-pairwise-signature"];
      const del = req.headers["x-pairwise-delivery"];
      deliveries.push({
        body,
        signature: typeof sig === "string" ? sig : undefined,
        delivery: typeof del === "string" ? del : undefined,
      });
      const status = script.shift() ?? 200;
      const event = JSON.parse(body) as WebhookEvent;
      res
        .writeHead(status, { "content-type": "application/json" })
        .end(status === 200 ? JSON.stringify({ reply: `got ${event.text ?? ""}` }) : "{}");
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const port = (receiver.address() as AddressInfo).port;
  server = await startRelay();
  owner = await account(server, "hookco");
  host = await startHost(server, [
    {
      name: "hook",
      plugins: [
        [
          "webhook",
          {
            url: `http://127.0.0.1:${String(port)}/in`,
            secret: SECRET,
            token: TOKEN,
            backoffMs: 20,
            attempts: 3,
          },
        ],
      ],
    },
    {
      name: "faq",
      plugins: [
        [
          "@pairwise/bot-host/auto-reply",
          {
            rules: [
              { keyword: "hours", answer: "We are open 9 to 17." },
              { pattern: "^price of (\\w+)", answer: "See our price list." },
            ],
          },
        ],
        ["echo", { prefix: "> " }],
      ],
    },
  ]);
  await linkBot(host, "hook", owner);
  await linkBot(host, "faq", owner);
});

afterAll(async () => {
  await host.stop();
  await owner.close();
  await server.close();
  await new Promise((r) => receiver.close(r));
});

describe("webhook plugin", () => {
  it("signs and verifies bodies with HMAC-SHA256", () => {
    const sig = signWebhookBody(SECRET, '{"a":1}');
    expect(sig).toMatch(/^sha256=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature(SECRET, '{"a":1}', sig)).toBe(true);
    expect(verifyWebhookSignature(SECRET, '{"a":2}', sig)).toBe(false);
    expect(verifyWebhookSignature("another-secret-0123456", '{"a":1}', sig)).toBe(false);
    expect(verifyWebhookSignature(SECRET, '{"a":1}', undefined)).toBe(false);
  });

  it("POSTs each inbound message signed, retries failures, and sends the receiver's reply", async () => {
    const c = await customer(server, "hook-customer");
    script.push(500, 503);
    const before = deliveries.length;
    // Both bots of the account get every message; the hook bot's answers start with "got".
    const hooked = () => c.inbox.filter((m) => m.text?.startsWith("got "));
    const id = await c.device.sendText("hookco", "where is my order?");
    await until(() => hooked().length >= 1, 30_000, "the webhook's reply");
    expect(hooked()[0]?.text).toBe("got where is my order?");
    const mine = deliveries.slice(before);
    expect(mine).toHaveLength(3); // 500, 503, then 200
    for (const d of mine) {
      expect(verifyWebhookSignature(SECRET, d.body, d.signature)).toBe(true);
      expect(d.delivery).toBe(id);
      expect(JSON.parse(d.body)).toEqual({
        type: "message",
        bot: "hook",
        id,
        chat: "hook-customer",
        from: { account: "hook-customer", device: 1 },
        text: "where is my order?",
        timestamp: expect.any(Number) as number,
      });
    }

    // A 4xx other than 429 is not retried.
    script.push(400);
    const before2 = deliveries.length;
    await c.device.sendText("hookco", "second");
    await c.device.sendText("hookco", "third");
    await until(() => hooked().length >= 2, 30_000, "the reply to the third message");
    expect(hooked().map((m) => m.text)).toEqual(["got where is my order?", "got third"]);
    expect(deliveries.length - before2).toBe(2);
    await c.device.close();
  });

  it("leaves a message whose whole round failed (unreachable, 5xx) to a later round, which delivers it", async () => {
    const c = await customer(server, "hook-later");
    script.push(500, 502, 503); // every attempt of the first round (3)
    const before = deliveries.length;
    const hooked = () => c.inbox.filter((m) => m.text?.startsWith("got "));
    const id = await c.device.sendText("hookco", "still there?");
    await until(() => hooked().length >= 1, 30_000, "the reply after a later round");
    expect(hooked().map((m) => m.text)).toEqual(["got still there?"]);
    const mine = deliveries.slice(before);
    expect(mine).toHaveLength(4); // three failures, then the later round's first attempt
    for (const d of mine) expect(d.delivery).toBe(id);
    await c.device.close();
  });

  it("sends outbound messages through the authenticated endpoint", async () => {
    const c = await customer(server, "hook-target");
    const endpoint = `${host.url}/bots/hook/webhook/send`;
    const post = (body: string, auth?: string) =>
      fetch(endpoint, {
        method: "POST",
        headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
        body,
      });
    const ok = JSON.stringify({ to: "hook-target", text: "your parcel shipped" });
    expect((await post(ok)).status).toBe(401);
    expect((await post(ok, "Bearer wrong-token-0123456789")).status).toBe(401);
    expect((await post("{not json", `Bearer ${TOKEN}`)).status).toBe(400);
    expect((await post(JSON.stringify({ to: "hook-target" }), `Bearer ${TOKEN}`)).status).toBe(400);
    expect((await fetch(`${host.url}/bots/hook/webhook/nope`, { method: "POST" })).status).toBe(
      404,
    );
    const res = await post(ok, `Bearer ${TOKEN}`);
    expect(res.status).toBe(200);
    const { id } = (await res.json()) as { id: string };
    await until(() => c.inbox.length >= 1, 30_000, "the outbound message");
    expect(c.inbox).toHaveLength(1);
    expect(c.inbox[0]).toMatchObject({ id, text: "your parcel shipped", fromAccount: "hookco" });
    await c.device.close();
  });
});

describe("auto-reply plugin", () => {
  it("answers keyword and regex rules and lets other texts through", async () => {
    const c = await customer(server, "faq-customer");
    for (const t of ["What are your HOURS?", "price of tea", "thehours", "hello"])
      await c.device.sendText("hookco", t);
    // Both bots of the account get every message; take the faq bot's answers.
    await until(() => c.inbox.length >= 8, 30_000, "answers of both bots");
    const faq = c.inbox.filter((m) => !m.text?.startsWith("got "));
    expect(faq.map((m) => m.text)).toEqual([
      "We are open 9 to 17.",
      "See our price list.",
      "> thehours",
      "> hello",
    ]);
    await c.device.close();
  });
});
