import { parseRemoteAddress } from "@pairwise/client";
import { isValidAccountId } from "@pairwise/core";
import { usageError } from "./errors.ts";

/** A relay URL from the command line: `ws://` or `wss://`. Throws `CliError("Usage")`. */
export function parseServerUrl(value: string | undefined): string {
  if (value === undefined) throw usageError("--server URL is required");
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw usageError(`--server: not a URL: ${value}`);
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:")
    throw usageError("--server must be a ws:// or wss:// URL");
  return value;
}

/** An account name (`[a-z0-9._-]{1,64}`). Throws `CliError("Usage")` naming `what`. */
export function parseAccountName(value: string, what: string): string {
  if (!isValidAccountId(value))
    throw usageError(`${what} must be an account name of 1-64 characters [a-z0-9._-]`);
  return value;
}

/**
 * An account to write to: a name on this server, or `name@provider` for a user of another
 * provider (a third-party chat). Throws `CliError("Usage")` naming `what`.
 */
export function parseRecipient(value: string, what: string): string {
  if (value.includes("@")) {
    if (!parseRemoteAddress(value))
      throw usageError(`${what} must be an account name or name@provider`);
    return value;
  }
  return parseAccountName(value, what);
}

/** A device name as the server stores it: 1-64 characters, no control characters. */
export function parseDeviceName(value: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what we refuse
  if (value.length === 0 || value.length > 64 || /[\u0000-\u001f\u007f]/.test(value))
    throw usageError("--device-name must be 1-64 characters without control characters");
  return value;
}

/** The default name of a companion: this machine's name, made acceptable to the server. */
export function defaultDeviceName(hostname: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what we drop
  const clean = hostname.replace(/[\u0000-\u001f\u007f]/g, "").slice(0, 64);
  return clean === "" ? "companion" : clean;
}

/** A companion's device id (2-127). Throws `CliError("Usage")`. */
export function parseCompanionId(value: string): number {
  const n = /^\d{1,3}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 2 && n <= 127)) throw usageError("DEVICE_ID must be a companion's id (2-127)");
  return n;
}
