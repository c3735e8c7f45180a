import { BackupError, type BackupProvider } from "@pairwise/backup";
import {
  createDestinationProvider,
  parseBackupDestination,
  type BackupDestination,
} from "@pairwise/backup/destinations";
import { usageError } from "../errors.ts";

export type { BackupDestination };

/** `--to` / `--from` parsed (see `@pairwise/backup/destinations`). Throws `CliError("Usage")`. */
export function parseDestination(value: string | undefined, flag: string): BackupDestination {
  if (value === undefined)
    throw usageError(`${flag} is required (fs:DIR, s3://BUCKET/PREFIX, gdrive, icloud)`);
  try {
    return parseBackupDestination(value);
  } catch (err) {
    if (BackupError.is(err, "InvalidArgument"))
      throw usageError(`${flag}: ${err.message.replace(/^InvalidArgument: /, "")}`);
    throw err;
  }
}

/** The provider for a destination, from the environment. Throws `CliError("Usage")`. */
export async function providerFor(dest: BackupDestination): Promise<BackupProvider> {
  try {
    return await createDestinationProvider(dest);
  } catch (err) {
    if (BackupError.is(err, "InvalidArgument"))
      throw usageError(err.message.replace(/^InvalidArgument: /, ""));
    throw err;
  }
}
