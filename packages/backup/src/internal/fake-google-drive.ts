import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local stand-in for the Drive v3 API over real HTTP, for tests. It checks what Drive checks
 * for this use: a Bearer token on every request, `uploadType=resumable` sessions whose metadata
 * names `appDataFolder` as the only parent, `Content-Range` that continues exactly where the
 * session stands, non-final chunks in multiples of 256 KiB, `spaces=appDataFolder` on listings.
 * `cutUploads` makes it drop that many chunk requests mid-body (keeping the whole 256 KiB blocks
 * that arrived, as Drive may), to exercise resuming.
 */
export interface FakeGoogleDrive {
  readonly url: string;
  /** Chunk requests still to cut mid-body. */
  cutUploads: number;
  /** Files stored (complete uploads only). */
  readonly files: Map<string, { name: string; data: Buffer }>;
  /** Requests refused, by reason (so tests can see the checks fire). */
  readonly refusals: string[];
  close(): Promise<void>;
}

const Q = 256 * 1024;

/** Starts a {@link FakeGoogleDrive} on a loopback port that accepts `token`. */
export async function startFakeGoogleDrive(token: string): Promise<FakeGoogleDrive> {
  const files = new Map<string, { name: string; data: Buffer }>();
  const sessions = new Map<string, { name: string; parts: Buffer[]; received: number }>();
  const refusals: string[] = [];
  const state = { cutUploads: 0 };
  let url = "";

  const refuse = (res: ServerResponse, status: number, reason: string) => {
    refusals.push(reason);
    res
      .writeHead(status, { "content-type": "application/json" })
      .end(JSON.stringify({ error: { code: status, message: reason } }));
  };
  const json = (res: ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  const readAll = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };

  const server = createServer((req, res) => {
    void (async () => {
      const u = new URL(req.url ?? "/", url);
      if (req.headers.authorization !== `Bearer ${token}`) {
        await readAll(req).catch(() => undefined);
        refuse(res, 401, "invalid credentials");
        return;
      }
      if (req.method === "POST" && u.pathname === "/upload/drive/v3/files") {
        const body = await readAll(req);
        if (u.searchParams.get("uploadType") !== "resumable") {
          refuse(res, 400, "uploadType");
          return;
        }
        if (!req.headers["content-type"]?.startsWith("application/json")) {
          refuse(res, 400, "metadata content type");
          return;
        }
        const meta = JSON.parse(body.toString("utf8")) as { name?: unknown; parents?: unknown };
        if (typeof meta.name !== "string" || meta.name.length === 0) {
          refuse(res, 400, "name");
          return;
        }
        if (JSON.stringify(meta.parents) !== '["appDataFolder"]') {
          refuse(res, 403, "appDataFolder scope only");
          return;
        }
        const id = randomBytes(8).toString("hex");
        sessions.set(id, { name: meta.name, parts: [], received: 0 });
        res
          .writeHead(200, {
            location: `${url}/upload/drive/v3/files?uploadType=resumable&upload_id=${id}`,
          })
          .end();
        return;
      }
      if (req.method === "PUT" && u.pathname === "/upload/drive/v3/files") {
        const session = sessions.get(u.searchParams.get("upload_id") ?? "");
        if (!session) {
          await readAll(req);
          refuse(res, 404, "no such upload session");
          return;
        }
        const range = /^bytes (?:(\d+)-(\d+)|\*)\/(\d+|\*)$/.exec(
          req.headers["content-range"] ?? "",
        );
        if (!range) {
          await readAll(req);
          refuse(res, 400, "content-range");
          return;
        }
        const total = range[3] === "*" ? undefined : Number(range[3]);
        if (range[1] === undefined) {
          // A status query (or an empty final request).
          await readAll(req);
          if (total !== undefined && total === session.received) {
            finish(res, session);
            return;
          }
          if (session.received > 0)
            res.setHeader("range", `bytes=0-${String(session.received - 1)}`);
          res.writeHead(308).end();
          return;
        }
        const start = Number(range[1]);
        const end = Number(range[2]);
        if (start !== session.received) {
          await readAll(req);
          refuse(res, 400, "range does not continue the session");
          return;
        }
        const final = total !== undefined && end + 1 === total;
        if (!final && (end - start + 1) % Q !== 0) {
          await readAll(req);
          refuse(res, 400, "chunk not a multiple of 256 KiB");
          return;
        }
        if (state.cutUploads > 0) {
          state.cutUploads--;
          // Take some of the body, keep whole 256 KiB blocks of it, then drop the connection.
          let got = 0;
          const kept: Buffer[] = [];
          for await (const c of req) {
            kept.push(c as Buffer);
            got += (c as Buffer).length;
            if (got >= (end - start + 1) / 2) break;
          }
          const keep = Math.floor(got / Q) * Q;
          if (keep > 0) {
            session.parts.push(Buffer.concat(kept).subarray(0, keep));
            session.received += keep;
          }
          req.socket.destroy();
          return;
        }
        const body = await readAll(req);
        if (body.length !== end - start + 1) {
          refuse(res, 400, "body length and range differ");
          return;
        }
        session.parts.push(body);
        session.received += body.length;
        if (final) {
          finish(res, session);
          return;
        }
        res.writeHead(308, { range: `bytes=0-${String(end)}` }).end();
        return;
      }
      await readAll(req);
      if (req.method === "GET" && u.pathname === "/drive/v3/files") {
        if (u.searchParams.get("spaces") !== "appDataFolder") {
          refuse(res, 403, "spaces");
          return;
        }
        const size = Math.min(Number(u.searchParams.get("pageSize") ?? "100"), 3);
        const all = [...files].map(([id, f]) => ({
          id,
          name: f.name,
          size: String(f.data.length),
        }));
        const from = Number(u.searchParams.get("pageToken") ?? "0");
        const page = all.slice(from, from + size);
        json(res, 200, {
          files: page,
          ...(from + size < all.length ? { nextPageToken: String(from + size) } : {}),
        });
        return;
      }
      const m = /^\/drive\/v3\/files\/([0-9a-f]+)$/.exec(u.pathname);
      const file = m ? files.get(m[1] ?? "") : undefined;
      if (!m || !file) {
        refuse(res, 404, "file not found");
        return;
      }
      if (req.method === "GET" && u.searchParams.get("alt") === "media") {
        res.writeHead(200, { "content-type": "application/octet-stream" }).end(file.data);
      } else if (req.method === "DELETE") {
        files.delete(m[1] ?? "");
        res.writeHead(204).end();
      } else {
        refuse(res, 400, "unsupported");
      }
    })().catch(() => res.destroy());
  });

  function finish(res: ServerResponse, session: { name: string; parts: Buffer[] }) {
    const id = randomBytes(8).toString("hex");
    files.set(id, { name: session.name, data: Buffer.concat(session.parts) });
    json(res, 200, { kind: "drive#file", id, name: session.name });
  }

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
  return {
    url,
    get cutUploads() {
      return state.cutUploads;
    },
    set cutUploads(n) {
      state.cutUploads = n;
    },
    files,
    refusals,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
