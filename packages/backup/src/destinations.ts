// @pairwise/backup/destinations: where a backup goes, written as one string (`fs:DIR`,
// `s3://BUCKET/PREFIX`, `gdrive`, `icloud`), and the provider for it. Shared by the CLI and the
// bot host; each provider's SDK is loaded only when its destination is used.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { BackupError } from "./internal/errors.ts";
import type { BackupProvider } from "./internal/provider.ts";

/** A backup destination, parsed. */
export type BackupDestination =
  | { readonly kind: "fs"; readonly dir: string }
  | { readonly kind: "s3"; readonly bucket: string; readonly prefix: string }
  | { readonly kind: "gdrive" }
  | { readonly kind: "icloud" };

/** The destination kinds, as their strings start. */
export type BackupDestinationKind = BackupDestination["kind"];

const ALL_KINDS: readonly BackupDestinationKind[] = ["fs", "s3", "gdrive", "icloud"];
const SHAPES: Record<BackupDestinationKind, string> = {
  fs: "fs:DIR",
  s3: "s3://BUCKET/PREFIX",
  gdrive: "gdrive",
  icloud: "icloud",
};

/** Options of {@link parseBackupDestination}. */
export interface ParseDestinationOptions {
  /** What a relative `fs:` directory is resolved against (default the working directory). */
  readonly baseDir?: string;
  /** The kinds accepted (default all). */
  readonly kinds?: readonly BackupDestinationKind[];
}

/**
 * Parses `fs:DIR`, `s3://BUCKET/PREFIX` (a valid bucket name; the prefix gets a trailing `/`),
 * `gdrive` or `icloud`. Throws `BackupError("InvalidArgument")` saying which shapes are
 * expected (never echoing the value).
 */
export function parseBackupDestination(
  value: string,
  options: ParseDestinationOptions = {},
): BackupDestination {
  const kinds = options.kinds ?? ALL_KINDS;
  const parsed = parse(value, options.baseDir);
  if (!parsed || !kinds.includes(parsed.kind)) {
    const shapes = kinds.map((k) => SHAPES[k]);
    throw new BackupError(
      "InvalidArgument",
      `expected ${shapes.length > 1 ? `${shapes.slice(0, -1).join(", ")} or ` : ""}${shapes.at(-1) ?? ""}`,
    );
  }
  return parsed;
}

function parse(value: string, baseDir: string | undefined): BackupDestination | undefined {
  if (value.startsWith("fs:") && value.length > 3)
    return { kind: "fs", dir: resolve(baseDir ?? process.cwd(), value.slice(3)) };
  const s3 = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(value);
  if (s3) {
    const prefix = s3[2] ?? "";
    return {
      kind: "s3",
      bucket: s3[1] ?? "",
      prefix: prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/`,
    };
  }
  if (value === "gdrive") return { kind: "gdrive" };
  if (value === "icloud") return { kind: "icloud" };
  return undefined;
}

type Env = Readonly<Record<string, string | undefined>>;

function required(env: Env, name: string): string {
  const v = env[name];
  if (v === undefined || v === "")
    throw new BackupError("InvalidArgument", `set ${name} to use this destination`);
  return v;
}

/**
 * The provider for a destination. S3 takes the AWS SDK's usual environment (region,
 * credentials) plus `PAIRWISE_S3_ENDPOINT` for S3-compatible services (path-style, checksums only
 * when required); Google Drive takes an access token in `PAIRWISE_GDRIVE_TOKEN` (and
 * `PAIRWISE_GDRIVE_URL` to point elsewhere); iCloud takes `PAIRWISE_ICLOUD_CONTAINER`,
 * `PAIRWISE_ICLOUD_KEY_ID`, `PAIRWISE_ICLOUD_KEY_FILE` (PEM), optional
 * `PAIRWISE_ICLOUD_ENVIRONMENT` and `PAIRWISE_ICLOUD_URL`. `env` defaults to `process.env`.
 * Throws `BackupError("InvalidArgument")` for missing or bad settings.
 */
export async function createDestinationProvider(
  dest: BackupDestination,
  env: Env = process.env,
): Promise<BackupProvider> {
  switch (dest.kind) {
    case "fs": {
      const { createFsProvider } = await import("./providers/fs.ts");
      return createFsProvider({ dir: dest.dir });
    }
    case "s3": {
      const [{ S3Client }, { createS3Provider }] = await Promise.all([
        import("@aws-sdk/client-s3"),
        import("./providers/s3.ts"),
      ]);
      const endpoint = env.PAIRWISE_S3_ENDPOINT;
      const client = new S3Client({
        ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
        requestChecksumCalculation: "WHEN_REQUIRED",
      });
      return createS3Provider({ client, bucket: dest.bucket, prefix: dest.prefix });
    }
    case "gdrive": {
      const { createGoogleDriveProvider } = await import("./providers/google-drive.ts");
      const token = required(env, "PAIRWISE_GDRIVE_TOKEN");
      const baseUrl = env.PAIRWISE_GDRIVE_URL;
      return createGoogleDriveProvider({
        getAccessToken: () => token,
        ...(baseUrl ? { baseUrl } : {}),
      });
    }
    case "icloud": {
      const { createICloudProvider } = await import("./providers/icloud.ts");
      const environment = env.PAIRWISE_ICLOUD_ENVIRONMENT ?? "production";
      if (environment !== "production" && environment !== "development") {
        throw new BackupError(
          "InvalidArgument",
          "PAIRWISE_ICLOUD_ENVIRONMENT must be production or development",
        );
      }
      let privateKey: string;
      try {
        privateKey = readFileSync(required(env, "PAIRWISE_ICLOUD_KEY_FILE"), "utf8");
      } catch (err) {
        if (BackupError.is(err)) throw err;
        throw new BackupError(
          "InvalidArgument",
          "cannot read the key file in PAIRWISE_ICLOUD_KEY_FILE",
        );
      }
      const baseUrl = env.PAIRWISE_ICLOUD_URL;
      return createICloudProvider({
        container: required(env, "PAIRWISE_ICLOUD_CONTAINER"),
        environment,
        keyId: required(env, "PAIRWISE_ICLOUD_KEY_ID"),
        privateKey,
        ...(baseUrl ? { baseUrl } : {}),
      });
    }
  }
}
