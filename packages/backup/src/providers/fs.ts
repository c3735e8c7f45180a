import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { BackupError } from "../internal/errors.ts";
import { checkObjectName, type BackupProvider, type StoredObject } from "../internal/provider.ts";

/** Options of {@link createFsProvider}. */
export interface FsProviderOptions {
  /** The directory backups are kept in (created if missing). */
  readonly dir: string;
}

/** fsyncs a directory (its entries: a rename into it); a no-op where the platform cannot. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EINVAL" && code !== "ENOTSUP" && code !== "EISDIR") throw err;
  } finally {
    await handle.close();
  }
}

/**
 * The embedded default provider: objects are files under `dir`. `put` writes a hidden temporary
 * file, fsyncs it and renames it into place, so a crash or a cut stream never leaves a
 * half-written object under its name. Failures are `BackupError("ProviderFailure")`.
 */
export function createFsProvider(options: FsProviderOptions): BackupProvider {
  const root = options.dir;
  const pathOf = (name: string) => join(root, ...checkObjectName(name).split("/"));
  return {
    name: "fs",
    maxObjectBytes: Number.MAX_SAFE_INTEGER,
    async put(name, body) {
      const path = pathOf(name);
      const temp = join(dirname(path), `.tmp-${randomBytes(8).toString("hex")}`);
      try {
        await mkdir(dirname(path), { recursive: true });
        // A write stream coalesces chunks (writev), overlaps disk writes with whatever produces
        // the body, and (flush) fsyncs before it closes.
        await pipeline(
          Readable.from(body),
          createWriteStream(temp, {
            flags: "wx",
            mode: 0o600,
            highWaterMark: 1024 * 1024,
            flush: true,
          }),
        );
        await rename(temp, path);
        // The rename is durable once the directory is: a backup reported done survives a crash.
        await syncDirectory(dirname(path));
      } catch (err) {
        // The temp file may not exist, or its directory may be unusable (ENOTDIR): the write's
        // own failure is what counts.
        await rm(temp, { force: true }).catch(() => undefined);
        throw wrap(err, "cannot write a backup file");
      }
    },
    async get(name) {
      const path = pathOf(name);
      try {
        await stat(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") {
          throw new BackupError("NotFound", "no such backup object");
        }
        throw wrap(err, "cannot read a backup file");
      }
      return (async function* () {
        try {
          for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 })) {
            yield chunk as Buffer;
          }
        } catch (err) {
          throw wrap(err, "cannot read a backup file");
        }
      })();
    },
    async delete(name) {
      try {
        await rm(pathOf(name), { force: true });
      } catch (err) {
        throw wrap(err, "cannot delete a backup file");
      }
    },
    async list(prefix) {
      const out: StoredObject[] = [];
      const walk = async (dir: string): Promise<void> => {
        let entries;
        try {
          entries = await readdir(dir, { withFileTypes: true });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
          throw wrap(err, "cannot list backups");
        }
        for (const entry of entries) {
          if (entry.name.startsWith(".tmp-")) continue;
          const full = join(dir, entry.name);
          if (entry.isDirectory()) await walk(full);
          else if (entry.isFile()) {
            const name = relative(root, full).split(sep).join("/");
            if (name.startsWith(prefix)) out.push({ name, size: (await stat(full)).size });
          }
        }
      };
      await walk(root);
      return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    },
  };
}

function wrap(err: unknown, message: string): BackupError {
  if (BackupError.is(err)) return err;
  return new BackupError("ProviderFailure", message, { cause: err });
}
