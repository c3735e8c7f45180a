// @pairwise/bot-host/webhook: POSTs inbound messages to a URL (HMAC-signed, retried) and serves
// an authenticated endpoint that sends outbound messages, so any language can drive a bot.
import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import { BotHostError } from "../internal/errors.ts";
import { definePlugin, type Plugin } from "../internal/plugin.ts";

const optionsSchema = z
  .object({
    /** Where inbound messages are POSTed. */
    url: z
      .string()
      .url()
      .regex(/^https?:\/\//, "an http:// or https:// URL"),
    /** HMAC-SHA256 key for the `X-Pairwise-Signature` header (at least 16 characters). */
    secret: z.string().min(16),
    /** Bearer token for the outbound endpoint (default: the secret). */
    token: z.string().min(16).optional(),
    /**
     * Attempts per round (default 5). A round that fails for passing reasons (unreachable, 429,
     * 5xx) leaves the message unacknowledged: the host runs it again after a backoff, with the
     * same `X-Pairwise-Delivery` id. A 4xx refusal ends the delivery.
     */
    attempts: z.number().int().min(1).max(20).default(5),
    /** First retry delay in ms, doubling (default 500). */
    backoffMs: z.number().int().min(1).max(60_000).default(500),
    /** Per-attempt timeout in ms (default 10 s). */
    timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  })
  .strict();

/** Options of the `webhook` plugin. */
export type WebhookOptions = z.input<typeof optionsSchema>;

/** The JSON body POSTed for each inbound message. */
export interface WebhookEvent {
  type: "message";
  bot: string;
  id: string;
  chat: string;
  from: { account: string; device: number };
  text?: string;
  timestamp: number;
}

/** The signature header value for a body: `sha256=<hex HMAC-SHA256(secret, body)>`. */
export function signWebhookBody(secret: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** Whether a signature header matches the body (constant time). */
export function verifyWebhookSignature(
  secret: string,
  body: string,
  header: string | undefined,
): boolean {
  if (!header) return false;
  const expected = Buffer.from(signWebhookBody(secret, body));
  const got = Buffer.from(header);
  return expected.length === got.length && timingSafeEqual(expected, got);
}

const MAX_BODY = 64 * 1024;

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolveBody, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new BotHostError("InvalidArgument", "body too large"));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolveBody(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

const outboundSchema = z
  .object({
    to: z.string().min(1).max(200),
    text: z.string().min(1).max(65_000),
    /** Makes a retried request safe: the same id is delivered once. */
    messageId: z.string().min(1).max(100).optional(),
  })
  .strict();

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/**
 * The `webhook` plugin. Each inbound message is POSTed as JSON ({@link WebhookEvent}) with
 * `X-Pairwise-Signature: sha256=<hex>` (HMAC-SHA256 of the body with `secret`) and
 * `X-Pairwise-Delivery: <message id>`, retried with exponential backoff on network errors,
 * 5xx and 429; a 2xx answer `{"reply":"..."}` is sent back to the chat. Outbound:
 * `POST /bots/<bot>/webhook/send` with `Authorization: Bearer <token>` and `{"to","text"}`
 * sends a text and answers `{"id"}`. Throws `BotHostError("PluginLoadFailed")` for bad options.
 */
export function webhook(options: WebhookOptions): Plugin {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success)
    throw new BotHostError(
      "PluginLoadFailed",
      `webhook: invalid options: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
  const o = parsed.data;
  const token = Buffer.from(`Bearer ${o.token ?? o.secret}`);
  return definePlugin({
    name: "webhook",
    setup(bot) {
      bot.on("message", async (ctx, next) => {
        const event: WebhookEvent = {
          type: "message",
          bot: bot.name,
          id: ctx.message.id,
          chat: ctx.chat.id,
          from: ctx.from,
          ...(ctx.message.text !== undefined ? { text: ctx.message.text } : {}),
          timestamp: ctx.message.timestamp,
        };
        const body = JSON.stringify(event);
        let reply: string | undefined;
        let delivered = false;
        let refused = false;
        for (let attempt = 1; attempt <= o.attempts && !delivered; attempt++) {
          try {
            const res = await fetch(o.url, {
              method: "POST",
              headers: {
                "content-type": "application/json",
                "x-pairwise-signature": signWebhookBody(o.secret, body),
                "x-pairwise-delivery": event.id,
              },
              body,
              signal: AbortSignal.timeout(o.timeoutMs),
            });
            const text = await res.text();
            if (res.ok) {
              delivered = true;
              try {
                const r = JSON.parse(text) as { reply?: unknown };
                if (typeof r.reply === "string" && r.reply !== "") reply = r.reply;
              } catch {
                // any 2xx body is fine
              }
            } else if (res.status !== 429 && res.status < 500) {
              ctx.log.warn({ status: res.status }, "webhook refused the delivery; not retrying");
              refused = true;
              break;
            } else ctx.log.warn({ status: res.status, attempt }, "webhook delivery failed");
          } catch (err) {
            ctx.log.warn(
              { attempt, err: err instanceof Error ? err.name : "error" },
              "webhook unreachable",
            );
          }
          if (!delivered && attempt < o.attempts) await sleep(o.backoffMs * 2 ** (attempt - 1));
        }
        if (!delivered && !refused)
          throw new BotHostError("RetryLater", "the webhook could not be reached");
        if (reply !== undefined) await ctx.reply(reply);
        await next();
      });

      bot.route("POST", "/send", async (req, res) => {
        const auth = Buffer.from(req.headers.authorization ?? "");
        if (auth.length !== token.length || !timingSafeEqual(auth, token)) {
          send(res, 401, { error: "Unauthorized" });
          return;
        }
        let input;
        try {
          input = outboundSchema.parse(JSON.parse(await readBody(req)));
        } catch {
          send(res, 400, {
            error: "InvalidRequest",
            message: 'expected JSON {"to": string, "text": string}',
          });
          return;
        }
        try {
          const { id } = await bot.api.sendText(input.to, input.text, {
            ...(input.messageId ? { messageId: input.messageId } : {}),
          });
          send(res, 200, { id });
        } catch (err) {
          const code = (err as { code?: unknown }).code;
          const status = code === "NotConnected" ? 503 : code === "NotFound" ? 404 : 502;
          send(res, status, { error: typeof code === "string" ? code : "SendFailed" });
        }
      });
    },
  });
}

export default webhook;
