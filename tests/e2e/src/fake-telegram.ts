// A local fake of the Telegram Bot API over real HTTP, for bridge tests: the methods a bridge
// uses, checked the way the real API checks them (token, chat, required fields, reply targets,
// file uploads by multipart attach:// or by file_id), long-polled getUpdates, file downloads,
// and injectable 429 rate limits with retry_after.
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

type Json = Record<string, unknown>;

/** A message as the fake stores it (what the bot sent or a user posted). */
export interface FakeMessage {
  message_id: number;
  chat: { id: number; type: string };
  from: { id: number; is_bot: boolean; first_name: string };
  date: number;
  text?: string;
  caption?: string;
  photo?: Array<{ file_id: string; file_unique_id: string; width: number; height: number }>;
  voice?: { file_id: string; file_unique_id: string; duration: number };
  video?: {
    file_id: string;
    file_unique_id: string;
    width: number;
    height: number;
    duration: number;
  };
  document?: { file_id: string; file_unique_id: string; file_name: string };
  reply_to_message?: FakeMessage;
}

/** One call the bot made, and how the fake answered. */
export interface FakeCall {
  method: string;
  status: number;
}

export interface FakeTelegram {
  apiRoot: string;
  token: string;
  botId: number;
  calls: FakeCall[];
  /** Messages in a chat, oldest first (bot's and users'). */
  messages(chatId: number): FakeMessage[];
  /** The bytes of a file by id. */
  file(fileId: string): Buffer | undefined;
  /** A user posts in a chat (delivered to the bot through getUpdates); returns the message. */
  post(
    chatId: number,
    content:
      | { text: string }
      | { photo: Buffer; caption?: string }
      | { voice: Buffer; caption?: string }
      | { video: Buffer; caption?: string },
    replyTo?: number,
  ): FakeMessage;
  /** The next `count` calls of `method` get 429 with `retry_after` seconds. */
  rateLimit(method: string, retryAfter: number, count?: number): void;
  /** Revokes the bot's token (as @BotFather does): every later call gets 401. */
  revokeToken(): void;
  close(): Promise<void>;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly description: string,
    readonly retryAfter?: number,
  ) {
    super(description);
  }
}

function parseMultipart(
  body: Buffer,
  boundary: string,
): { fields: Json; files: Map<string, Buffer> } {
  const fields: Json = {};
  const files = new Map<string, Buffer>();
  const delimiter = Buffer.from(`--${boundary}`);
  let pos = body.indexOf(delimiter);
  if (pos < 0) throw new ApiError(400, "Bad Request: invalid multipart body");
  for (;;) {
    pos += delimiter.length;
    if (body.subarray(pos, pos + 2).toString() === "--") break;
    pos += 2; // CRLF
    const headerEnd = body.indexOf("\r\n\r\n", pos);
    const next = body.indexOf(delimiter, headerEnd);
    if (headerEnd < 0 || next < 0) throw new ApiError(400, "Bad Request: invalid multipart body");
    const headers = body.subarray(pos, headerEnd).toString();
    const content = body.subarray(headerEnd + 4, next - 2); // minus the CRLF before the delimiter
    const name = /name="([^"]+)"/i.exec(headers)?.[1];
    if (!name) throw new ApiError(400, "Bad Request: multipart part without a name");
    if (/filename=/i.test(headers)) files.set(name, Buffer.from(content));
    else fields[name] = content.toString();
    pos = next;
  }
  return { fields, files };
}

export async function startFakeTelegram(knownChats: number[]): Promise<FakeTelegram> {
  const botId = 7_000_000 + Math.floor(Math.random() * 1000);
  const token = `${botId}:${randomBytes(16).toString("base64url")}`;
  const chats = new Map<number, FakeMessage[]>(knownChats.map((c) => [c, []]));
  const fileStore = new Map<string, { path: string; bytes: Buffer }>();
  const updates: Array<{ update_id: number; message: FakeMessage }> = [];
  let nextUpdate = 1;
  let nextMessage = 1;
  const waiters = new Set<() => void>();
  /** Ends the long poll waiting now with a conflict (a newer getUpdates came in). */
  let endPoll: (() => void) | undefined;
  let revoked = false;
  const limits = new Map<string, { retryAfter: number; count: number }>();
  const calls: FakeCall[] = [];
  const bot = { id: botId, is_bot: true, first_name: "Bridge", username: "pairwise_bridge_bot" };

  const storeFile = (bytes: Buffer, ext: string) => {
    const id = `F${randomBytes(12).toString("base64url")}`;
    fileStore.set(id, { path: `files/${id}.${ext}`, bytes });
    return id;
  };

  const chatOf = (raw: unknown): FakeMessage[] => {
    const id = typeof raw === "number" ? raw : typeof raw === "string" ? Number(raw) : NaN;
    const list = chats.get(id);
    if (raw === undefined) throw new ApiError(400, "Bad Request: chat_id is empty");
    if (!list) throw new ApiError(400, "Bad Request: chat not found");
    return list;
  };

  const replyOf = (list: FakeMessage[], raw: unknown): FakeMessage | undefined => {
    if (raw === undefined) return undefined;
    const p = (typeof raw === "string" ? JSON.parse(raw) : raw) as {
      message_id?: unknown;
      allow_sending_without_reply?: unknown;
    };
    if (typeof p.message_id !== "number")
      throw new ApiError(400, "Bad Request: reply_parameters.message_id is required");
    const target = list.find((m) => m.message_id === p.message_id);
    if (!target && p.allow_sending_without_reply !== true)
      throw new ApiError(400, "Bad Request: message to be replied not found");
    return target;
  };

  const push = (chatId: number, m: Omit<FakeMessage, "message_id" | "date" | "chat">) => {
    const list = chats.get(chatId) ?? [];
    chats.set(chatId, list);
    const message: FakeMessage = {
      message_id: nextMessage++,
      chat: { id: chatId, type: "group" },
      date: Math.floor(Date.now() / 1000),
      ...m,
    };
    list.push(message);
    return message;
  };

  const mediaField = (
    kind: "photo" | "voice" | "video" | "document",
    fields: Json,
    files: Map<string, Buffer>,
  ): Buffer => {
    const ref = fields[kind];
    if (typeof ref !== "string" || ref === "")
      throw new ApiError(400, `Bad Request: there is no ${kind} in the request`);
    if (ref.startsWith("attach://")) {
      const f = files.get(ref.slice("attach://".length));
      if (!f) throw new ApiError(400, `Bad Request: file attach://… for ${kind} not found`);
      if (f.length === 0) throw new ApiError(400, "Bad Request: file must be non-empty");
      return f;
    }
    const known = fileStore.get(ref);
    if (!known) throw new ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified");
    return known.bytes;
  };

  const captionOf = (fields: Json): string | undefined => {
    const c = fields.caption;
    if (c === undefined) return undefined;
    if (typeof c !== "string") throw new ApiError(400, "Bad Request: caption must be a string");
    if (c.length > 1024) throw new ApiError(400, "Bad Request: message caption is too long");
    return c;
  };

  async function handle(
    method: string,
    fields: Json,
    files: Map<string, Buffer>,
    req: IncomingMessage,
  ): Promise<unknown> {
    const limit = limits.get(method);
    if (limit && limit.count > 0) {
      limit.count--;
      throw new ApiError(
        429,
        `Too Many Requests: retry after ${limit.retryAfter}`,
        limit.retryAfter,
      );
    }
    switch (method) {
      case "getMe":
        return bot;
      case "deleteWebhook":
        return true;
      case "getUpdates": {
        const offset = Number(fields.offset ?? 0);
        const timeout = Math.min(Number(fields.timeout ?? 0), 50);
        const limitN = Math.min(Number(fields.limit ?? 100), 100);
        // As the real API does, a newer getUpdates ends the one still waiting: two pollers of
        // one bot keep ending each other's polls.
        endPoll?.();
        if (offset > 0) while ((updates[0]?.update_id ?? offset) < offset) updates.shift();
        if (updates.length === 0 && timeout > 0) {
          const poll = { conflict: false };
          await new Promise<void>((resolve) => {
            const t = setTimeout(done, timeout * 1000);
            const terminate = () => {
              poll.conflict = true;
              done();
            };
            function done() {
              clearTimeout(t);
              waiters.delete(done);
              if (endPoll === terminate) endPoll = undefined;
              resolve();
            }
            endPoll = terminate;
            waiters.add(done);
            req.once("close", done);
          });
          if (poll.conflict) {
            throw new ApiError(
              409,
              "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
            );
          }
        }
        return updates.slice(0, limitN);
      }
      case "sendMessage": {
        const list = chatOf(fields.chat_id);
        const text = fields.text;
        if (typeof text !== "string" || text.length === 0)
          throw new ApiError(400, "Bad Request: message text is empty");
        if (text.length > 4096) throw new ApiError(400, "Bad Request: message is too long");
        const reply = replyOf(list, fields.reply_parameters);
        return push(Number(fields.chat_id), {
          from: bot,
          text,
          ...(reply ? { reply_to_message: reply } : {}),
        });
      }
      case "sendPhoto":
      case "sendVoice":
      case "sendVideo":
      case "sendDocument": {
        const kind = method.slice(4).toLowerCase() as "photo" | "voice" | "video" | "document";
        const list = chatOf(fields.chat_id);
        const bytes = mediaField(kind, fields, files);
        const caption = captionOf(fields);
        const reply = replyOf(list, fields.reply_parameters);
        const id = storeFile(
          bytes,
          kind === "photo" ? "jpg" : kind === "voice" ? "ogg" : kind === "video" ? "mp4" : "dat",
        );
        const uid = id.slice(1, 9);
        const media =
          kind === "photo"
            ? { photo: [{ file_id: id, file_unique_id: uid, width: 1, height: 1 }] }
            : kind === "voice"
              ? { voice: { file_id: id, file_unique_id: uid, duration: 1 } }
              : kind === "video"
                ? { video: { file_id: id, file_unique_id: uid, width: 1, height: 1, duration: 1 } }
                : { document: { file_id: id, file_unique_id: uid, file_name: "file" } };
        return push(Number(fields.chat_id), {
          from: bot,
          ...media,
          ...(caption !== undefined ? { caption } : {}),
          ...(reply ? { reply_to_message: reply } : {}),
        });
      }
      case "getFile": {
        const id = fields.file_id;
        const f = typeof id === "string" ? fileStore.get(id) : undefined;
        if (!f) throw new ApiError(400, "Bad Request: invalid file_id");
        return {
          file_id: id,
          file_unique_id: String(id).slice(1, 9),
          file_size: f.bytes.length,
          file_path: f.path,
        };
      }
      default:
        throw new ApiError(404, "Not Found");
    }
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const url = req.url ?? "";
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks);
      const file = /^\/file\/bot([^/]+)\/(.+)$/.exec(url);
      if (file) {
        const f = [...fileStore.values()].find((x) => x.path === file[2]);
        if (file[1] !== token || !f) {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, { "content-type": "application/octet-stream" }).end(f.bytes);
        return;
      }
      const m = /^\/bot([^/]+)\/([A-Za-z]+)$/.exec(url);
      const reply = (status: number, payload: Json) => {
        res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(payload));
      };
      if (!m) {
        reply(404, { ok: false, error_code: 404, description: "Not Found" });
        return;
      }
      const method = m[2] ?? "";
      try {
        if (m[1] !== token || revoked) throw new ApiError(401, "Unauthorized");
        if (req.method !== "POST" && req.method !== "GET")
          throw new ApiError(405, "Method Not Allowed");
        const type = req.headers["content-type"] ?? "";
        let fields: Json = {};
        let files = new Map<string, Buffer>();
        if (type.startsWith("application/json")) {
          fields = body.length ? (JSON.parse(body.toString()) as Json) : {};
        } else if (type.startsWith("multipart/form-data")) {
          const boundary = /boundary=(.+)$/.exec(type)?.[1];
          if (!boundary) throw new ApiError(400, "Bad Request: multipart without boundary");
          ({ fields, files } = parseMultipart(body, boundary));
        } else if (body.length > 0) {
          throw new ApiError(400, "Bad Request: unsupported content type");
        }
        const result = await handle(method, fields, files, req);
        calls.push({ method, status: 200 });
        reply(200, { ok: true, result });
      } catch (err) {
        const e =
          err instanceof ApiError ? err : new ApiError(400, "Bad Request: malformed request");
        calls.push({ method, status: e.status });
        reply(e.status, {
          ok: false,
          error_code: e.status,
          description: e.description,
          ...(e.retryAfter !== undefined ? { parameters: { retry_after: e.retryAfter } } : {}),
        });
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    apiRoot: `http://127.0.0.1:${port}`,
    token,
    botId,
    calls,
    messages: (chatId) => [...(chats.get(chatId) ?? [])],
    file: (id) => fileStore.get(id)?.bytes,
    post(chatId, content, replyTo) {
      const list = chats.get(chatId);
      if (!list) throw new Error("unknown chat");
      const from = { id: 4242, is_bot: false, first_name: "Tanya" };
      const reply = replyTo === undefined ? undefined : list.find((m) => m.message_id === replyTo);
      let media: Partial<FakeMessage>;
      if ("text" in content) media = { text: content.text };
      else if ("photo" in content) {
        const id = storeFile(content.photo, "jpg");
        media = { photo: [{ file_id: id, file_unique_id: id.slice(1, 9), width: 1, height: 1 }] };
      } else if ("voice" in content) {
        const id = storeFile(content.voice, "ogg");
        media = { voice: { file_id: id, file_unique_id: id.slice(1, 9), duration: 1 } };
      } else {
        const id = storeFile(content.video, "mp4");
        media = {
          video: { file_id: id, file_unique_id: id.slice(1, 9), width: 1, height: 1, duration: 1 },
        };
      }
      const caption = "caption" in content ? content.caption : undefined;
      const message = push(chatId, {
        from,
        ...media,
        ...(caption !== undefined ? { caption } : {}),
        ...(reply ? { reply_to_message: reply } : {}),
      });
      updates.push({ update_id: nextUpdate++, message });
      for (const w of [...waiters]) w();
      return message;
    },
    rateLimit(method, retryAfter, count = 1) {
      limits.set(method, { retryAfter, count });
    },
    revokeToken() {
      revoked = true;
    },
    async close() {
      for (const w of [...waiters]) w();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
