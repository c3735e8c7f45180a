import { createHash, randomBytes, verify, type KeyObject } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local stand-in for CloudKit Web Services over real HTTP, for tests. It checks what CloudKit
 * checks of a server-to-server client: the key id, an ISO 8601 date within 10 minutes without
 * milliseconds, the ECDSA P-256 SHA-256 signature over `date:base64(sha256(body)):path`, the
 * public database only, single-use asset upload URLs with the asset size limit and an exact
 * Content-Length, and records that may only reference a receipt from a finished upload.
 */
export interface FakeCloudKit {
  readonly url: string;
  /** Asset uploads still to cut mid-body. */
  cutUploads: number;
  readonly refusals: string[];
  /** Records by name (only ones created through records/modify). */
  readonly records: Map<string, { name: string; size: number; data: Buffer }>;
  close(): Promise<void>;
}

/** Starts a {@link FakeCloudKit} that trusts `publicKey` under `keyId`. */
export async function startFakeCloudKit(options: {
  keyId: string;
  publicKey: KeyObject;
  container: string;
  maxAssetBytes: number;
}): Promise<FakeCloudKit> {
  const root = `/database/1/${options.container}/development/public/`;
  const uploads = new Map<string, { recordType: string; fieldName: string }>();
  const receipts = new Map<string, Buffer>();
  const records = new Map<string, { name: string; size: number; data: Buffer }>();
  const refusals: string[] = [];
  const state = { cutUploads: 0 };
  let url = "";

  const send = (res: ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  const refuse = (res: ServerResponse, status: number, code: string, reason: string) => {
    refusals.push(reason);
    send(res, status, { uuid: randomBytes(8).toString("hex"), serverErrorCode: code, reason });
  };
  const readAll = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };

  const server = createServer((req, res) => {
    void (async () => {
      const u = new URL(req.url ?? "/", url);
      if (u.pathname.startsWith("/upload/")) return upload(req, res, u.pathname.slice(8));
      if (u.pathname.startsWith("/download/")) {
        await readAll(req);
        const record = records.get(u.pathname.slice(10).split("/")[0] ?? "");
        if (!record) {
          refuse(res, 404, "NOT_FOUND", "no such asset");
          return;
        }
        res.writeHead(200, { "content-type": "application/octet-stream" }).end(record.data);
        return;
      }
      const body = await readAll(req);
      const date = req.headers["x-apple-cloudkit-request-iso8601date"];
      const signature = req.headers["x-apple-cloudkit-request-signaturev1"];
      if (req.headers["x-apple-cloudkit-request-keyid"] !== options.keyId) {
        refuse(res, 401, "AUTHENTICATION_FAILED", "unknown key id");
        return;
      }
      if (
        typeof date !== "string" ||
        !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(date) ||
        Math.abs(Date.parse(date) - Date.now()) > 10 * 60_000
      ) {
        refuse(res, 401, "AUTHENTICATION_FAILED", "bad or stale date");
        return;
      }
      const hash = createHash("sha256").update(body).digest("base64");
      const message = Buffer.from(`${date}:${hash}:${u.pathname}`);
      if (
        typeof signature !== "string" ||
        !verify("sha256", message, options.publicKey, Buffer.from(signature, "base64"))
      ) {
        refuse(res, 401, "AUTHENTICATION_FAILED", "bad signature");
        return;
      }
      if (!u.pathname.startsWith(root)) {
        refuse(res, 403, "ACCESS_DENIED", "server-to-server keys reach the public database only");
        return;
      }
      const op = u.pathname.slice(root.length);
      const json = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
      if (op === "assets/upload") {
        const tokens = (json.tokens ?? []) as Array<{
          recordType: string;
          fieldName: string;
          recordName?: string;
        }>;
        send(res, 200, {
          tokens: tokens.map((t) => {
            const id = randomBytes(12).toString("hex");
            uploads.set(id, { recordType: t.recordType, fieldName: t.fieldName });
            return { recordName: t.recordName, fieldName: t.fieldName, url: `${url}/upload/${id}` };
          }),
        });
      } else if (op === "records/modify") {
        const out: unknown[] = [];
        for (const o of (json.operations ?? []) as Array<{
          operationType: string;
          record: {
            recordName: string;
            recordType?: string;
            fields?: Record<string, { value: unknown }>;
          };
        }>) {
          const name = o.record.recordName;
          if (o.operationType === "forceDelete") {
            records.delete(name);
            out.push({ recordName: name, deleted: true });
            continue;
          }
          if (o.operationType === "create" && records.has(name)) {
            out.push({ recordName: name, serverErrorCode: "CONFLICT" });
            continue;
          }
          const asset = o.record.fields?.data?.value as
            { receipt?: string; size?: number } | undefined;
          const data = asset?.receipt ? receipts.get(asset.receipt) : undefined;
          if (!data || asset?.size !== data.length) {
            refusals.push("record references no finished upload");
            out.push({ recordName: name, serverErrorCode: "BAD_REQUEST" });
            continue;
          }
          receipts.delete(asset.receipt ?? "");
          records.set(name, {
            name: String(o.record.fields?.name?.value),
            size: Number(o.record.fields?.size?.value),
            data,
          });
          out.push({ recordName: name, recordType: o.record.recordType });
        }
        send(res, 200, { records: out });
      } else if (op === "records/lookup") {
        send(res, 200, {
          records: ((json.records ?? []) as Array<{ recordName: string }>).map(({ recordName }) => {
            const r = records.get(recordName);
            return r
              ? {
                  recordName,
                  fields: {
                    name: { value: r.name },
                    size: { value: r.size },
                    data: {
                      value: {
                        size: r.data.length,
                        downloadURL: `${url}/download/${recordName}/\${f}`,
                      },
                    },
                  },
                }
              : { recordName, serverErrorCode: "NOT_FOUND", reason: "Record not found" };
          }),
        });
      } else if (op === "records/query") {
        const query = json.query as { filterBy?: Array<{ fieldValue: { value: string } }> };
        const prefix = query.filterBy?.[0]?.fieldValue.value ?? "";
        const all = [...records].filter(([, r]) => r.name.startsWith(prefix));
        const from = Number(json.continuationMarker ?? "0");
        const page = all.slice(from, from + 2);
        send(res, 200, {
          records: page.map(([recordName, r]) => ({
            recordName,
            fields: { name: { value: r.name }, size: { value: r.size } },
          })),
          ...(from + 2 < all.length ? { continuationMarker: String(from + 2) } : {}),
        });
      } else {
        refuse(res, 400, "BAD_REQUEST", "unknown operation");
      }
    })().catch(() => res.destroy());
  });

  async function upload(req: IncomingMessage, res: ServerResponse, id: string) {
    const ticket = uploads.get(id);
    uploads.delete(id); // single use
    const length = Number(req.headers["content-length"]);
    if (!ticket) {
      await readAll(req);
      refuse(res, 403, "ACCESS_DENIED", "unknown or used upload URL");
      return;
    }
    if (!Number.isSafeInteger(length)) {
      await readAll(req);
      refuse(res, 411, "BAD_REQUEST", "asset upload needs a Content-Length");
      return;
    }
    if (length > options.maxAssetBytes) {
      req.socket.destroy();
      refusals.push("asset too large");
      return;
    }
    if (state.cutUploads > 0) {
      state.cutUploads--;
      let got = 0;
      for await (const c of req) {
        got += (c as Buffer).length;
        if (got >= length / 2) break;
      }
      req.socket.destroy();
      return;
    }
    const data = await readAll(req);
    if (data.length !== length) {
      refuse(res, 400, "BAD_REQUEST", "short asset body");
      return;
    }
    const receipt = randomBytes(16).toString("hex");
    receipts.set(receipt, data);
    send(res, 200, {
      singleFile: {
        wrappingKey: randomBytes(16).toString("base64"),
        fileChecksum: createHash("sha256").update(data).digest("base64"),
        receipt,
        referenceChecksum: randomBytes(8).toString("base64"),
        size: data.length,
      },
    });
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
    refusals,
    records,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
