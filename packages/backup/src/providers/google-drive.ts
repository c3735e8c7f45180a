import { BackupError } from "../internal/errors.ts";
import {
  checkObjectName,
  rechunk,
  withRetries,
  type BackupProvider,
  type RetryOptions,
  type StoredObject,
} from "../internal/provider.ts";

/** Options of {@link createGoogleDriveProvider}. */
export interface GoogleDriveProviderOptions {
  /** An OAuth 2.0 access token with the `drive.appdata` scope, fetched fresh when needed. */
  readonly getAccessToken: () => Promise<string> | string;
  /** API base URL (default `https://www.googleapis.com`); tests point it at a local fake. */
  readonly baseUrl?: string;
  /** Bytes per resumable-upload request, a multiple of 256 KiB (default 8 MiB). */
  readonly chunkBytes?: number;
  readonly retry?: RetryOptions;
  readonly fetch?: typeof fetch;
}

/** Resumable uploads go in multiples of this. */
export const DRIVE_CHUNK_GRANULARITY = 256 * 1024;

interface DriveFile {
  id: string;
  name: string;
  size?: string;
}

/**
 * Backups in the user's Google Drive application data folder (`appDataFolder`, hidden from the
 * user's files), through Drive API v3 over REST. Uploads are resumable sessions sent in
 * 256 KiB-multiple chunks (one chunk buffered); a dropped request is retried with backoff and
 * resumes from the offset Drive confirms. A file exists only once its upload completed.
 * Failures are `BackupError("ProviderFailure")`; a missing object is `"NotFound"`.
 */
export function createGoogleDriveProvider(options: GoogleDriveProviderOptions): BackupProvider {
  const base = (options.baseUrl ?? "https://www.googleapis.com").replace(/\/$/, "");
  const chunkBytes = options.chunkBytes ?? 8 * 1024 * 1024;
  if (
    !Number.isSafeInteger(chunkBytes) ||
    chunkBytes <= 0 ||
    chunkBytes % DRIVE_CHUNK_GRANULARITY
  ) {
    throw new BackupError("InvalidArgument", "Drive chunks must be a multiple of 256 KiB");
  }
  const doFetch = options.fetch ?? fetch;
  const retry = <T>(fn: (attempt: number) => Promise<T>) =>
    withRetries(fn, {
      ...options.retry,
      retryable: (err) => !BackupError.is(err) || err.code === "ProviderFailure",
    });

  const request = async (url: string, init: RequestInit = {}): Promise<Response> => {
    const token = await options.getAccessToken();
    try {
      return await doFetch(url, {
        ...init,
        headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${token}` },
      });
    } catch (cause) {
      throw new BackupError("ProviderFailure", "cannot reach Google Drive", { cause });
    }
  };
  const expectOk = async (res: Response, what: string): Promise<Response> => {
    if (res.ok) return res;
    await res.body?.cancel();
    if (res.status === 404) throw new BackupError("NotFound", "no such backup object");
    if (res.status === 401 || res.status === 403) {
      throw new BackupError(
        "ProviderFailure",
        `Google Drive refused (${String(res.status)}) to ${what}`,
      );
    }
    throw new BackupError(
      "ProviderFailure",
      `Google Drive failed (${String(res.status)}) to ${what}`,
    );
  };

  const listFiles = async (filter: (f: DriveFile) => boolean): Promise<DriveFile[]> => {
    const out: DriveFile[] = [];
    let pageToken: string | undefined;
    do {
      const url = new URL(`${base}/drive/v3/files`);
      url.searchParams.set("spaces", "appDataFolder");
      url.searchParams.set("fields", "nextPageToken,files(id,name,size)");
      url.searchParams.set("pageSize", "1000");
      if (pageToken) url.searchParams.set("pageToken", pageToken);
      const res = await retry(async () => expectOk(await request(url.href), "list files"));
      const page = (await res.json()) as { files?: DriveFile[]; nextPageToken?: string };
      out.push(...(page.files ?? []).filter(filter));
      pageToken = page.nextPageToken;
    } while (pageToken);
    return out;
  };
  const findFile = async (name: string): Promise<DriveFile | undefined> =>
    (await listFiles((f) => f.name === name))[0];

  return {
    name: "google-drive",
    maxObjectBytes: 5 * 1024 ** 4,
    async put(name, body) {
      checkObjectName(name);
      const session = await retry(async () => {
        const res = await expectOk(
          await request(`${base}/upload/drive/v3/files?uploadType=resumable`, {
            method: "POST",
            headers: {
              "content-type": "application/json; charset=UTF-8",
              "x-upload-content-type": "application/octet-stream",
            },
            body: JSON.stringify({ name, parents: ["appDataFolder"] }),
          }),
          "start an upload",
        );
        const location = res.headers.get("location");
        await res.body?.cancel();
        if (!location) throw new BackupError("ProviderFailure", "Drive gave no upload session");
        return location;
      });
      const chunks = rechunk(body, chunkBytes)[Symbol.asyncIterator]();
      let offset = 0;
      let current = await chunks.next();
      let created: DriveFile | undefined;
      for (;;) {
        const next = current.done ? current : await chunks.next();
        const chunk = current.done ? Buffer.alloc(0) : current.value;
        const last = next.done === true;
        const total = last ? String(offset + chunk.length) : "*";
        created = await retry(async (attempt) => {
          let sent = 0;
          if (attempt > 1) {
            // Ask Drive how much of this session it holds and go on from there.
            const status = await request(session, {
              method: "PUT",
              headers: { "content-range": `bytes */${total}` },
            });
            if (status.ok) return (await status.json()) as DriveFile;
            await status.body?.cancel();
            if (status.status !== 308) await expectOk(status, "resume an upload");
            const received = rangeEnd(status.headers.get("range"));
            sent = Math.max(0, received - offset);
            if (sent > chunk.length)
              throw new BackupError("ProviderFailure", "Drive is ahead of the upload");
          }
          const piece = chunk.subarray(sent);
          const start = offset + sent;
          const range =
            piece.length === 0
              ? `bytes */${total}`
              : `bytes ${String(start)}-${String(start + piece.length - 1)}/${total}`;
          const res = await request(session, {
            method: "PUT",
            headers: { "content-range": range },
            body: piece,
          });
          if (res.status === 308) {
            await res.body?.cancel();
            if (last) throw new BackupError("ProviderFailure", "Drive did not finish the upload");
            if (rangeEnd(res.headers.get("range")) !== offset + chunk.length) {
              throw new BackupError("ProviderFailure", "Drive holds less than was sent");
            }
            return undefined;
          }
          return (await (await expectOk(res, "upload")).json()) as DriveFile;
        });
        offset += chunk.length;
        if (last) break;
        current = next;
      }
      if (!created?.id) throw new BackupError("ProviderFailure", "Drive gave no file id");
      // Names are not unique in Drive: drop older files of the same name so reads are unambiguous.
      const createdId = created.id;
      for (const old of await listFiles((f) => f.name === name && f.id !== createdId)) {
        await retry(async () =>
          expectOk(
            await request(`${base}/drive/v3/files/${old.id}`, { method: "DELETE" }),
            "delete a file",
          ),
        );
      }
    },
    async get(name) {
      checkObjectName(name);
      const file = await findFile(name);
      if (!file) throw new BackupError("NotFound", "no such backup object");
      const res = await retry(async () =>
        expectOk(await request(`${base}/drive/v3/files/${file.id}?alt=media`), "download"),
      );
      const stream = res.body;
      if (!stream) throw new BackupError("ProviderFailure", "Drive returned no body");
      return (async function* () {
        try {
          for await (const chunk of stream) yield chunk;
        } catch (cause) {
          throw new BackupError("ProviderFailure", "Drive download failed", { cause });
        }
      })();
    },
    async delete(name) {
      checkObjectName(name);
      for (const file of await listFiles((f) => f.name === name)) {
        await retry(async () => {
          const res = await request(`${base}/drive/v3/files/${file.id}`, { method: "DELETE" });
          if (res.status === 404) return;
          await expectOk(res, "delete a file");
        });
      }
    },
    async list(prefix): Promise<StoredObject[]> {
      return (await listFiles((f) => f.name.startsWith(prefix))).map((f) => ({
        name: f.name,
        size: Number(f.size ?? 0),
      }));
    },
  };
}

/** The byte count a `Range: bytes=0-N` header confirms (N + 1), 0 without one. */
function rangeEnd(header: string | null): number {
  const m = header ? /^bytes=0-(\d+)$/.exec(header) : null;
  return m ? Number(m[1]) + 1 : 0;
}
