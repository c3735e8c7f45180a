import { ClientError, type StoredMessage } from "@pairwise/client";
import { CoreError } from "@pairwise/core";
import { CliError, exitCodeOf } from "./errors.ts";
import type { CliContext } from "./io.ts";

/** A message as `receive --json` and `history --json` print it. */
export interface MessageJson {
  id: string;
  /** The sending account. */
  from: string;
  /** The sending device. */
  fromDevice: number;
  /** The account the message was addressed to (ours, or the other side for our own messages). */
  to: string;
  text: string;
  /** Sender's time, ms since the epoch. */
  timestamp: number;
  /** A copy of a message another of our devices sent. */
  sync: boolean;
  /** Set on a third-party chat (a user of another provider). */
  thirdParty?: true;
  /** Where a received or sent file was saved (file messages only; `text` is then the caption). */
  file?: string;
}

/**
 * The JSON shape of a stored message, seen from account `me`: a message to us is addressed to
 * `me`; one we sent (from this or another of our devices) to its conversation; a group
 * message to its `group:<id>`.
 */
export function messageJson(m: StoredMessage, me: string): MessageJson {
  return {
    id: m.id,
    from: m.fromAccount,
    fromDevice: m.fromDevice,
    to: m.outgoing || m.chat.startsWith("group:") ? m.chat : me,
    text: m.text ?? "",
    timestamp: m.timestamp,
    sync: m.sync,
    ...(m.file === undefined ? {} : { file: m.file }),
    // A chat with a user of another provider is labelled as such everywhere it is shown.
    ...(m.chat.includes("@") ? { thirdParty: true } : {}),
  };
}

/** One human-readable line for a message. */
export function messageLine(m: MessageJson): string {
  const when = new Date(m.timestamp).toISOString();
  const via =
    (m.sync ? " (sent from another of your devices)" : "") + (m.thirdParty ? " [third-party]" : "");
  const body = m.file === undefined ? m.text : `[file ${m.file}]${m.text ? ` ${m.text}` : ""}`;
  return `${when}  ${m.from}#${m.fromDevice} -> ${m.to}${via}: ${body}`;
}

/** Prints a command's result: `value` as one JSON line with `--json`, else `human`. */
export function printResult(ctx: CliContext, value: unknown, human: string): void {
  ctx.io.stdout(
    ctx.json ? `${JSON.stringify(value)}\n` : human.endsWith("\n") ? human : `${human}\n`,
  );
}

/** Prints a warning on stderr (never on stdout, so `--json` output stays parseable). */
export function warn(ctx: CliContext, message: string): void {
  ctx.io.stderr(`pairwise: warning: ${message}\n`);
}

const SERVER_REFUSALS: Record<string, string> = {
  Unauthorized: "the server refused this device: it is not (or no longer) registered there",
  NotFound: "the server knows no such account or device",
  Conflict: "the server refused: that already exists",
  TooManyDevices: "this account has no free companion slot",
  Expired: "the link code expired; show a fresh one on the new device",
  RateLimited: "the server is rate limiting this device; try again later",
  StaleDeviceList: "the server holds a newer device list than this device",
  MismatchedDevices: "the recipient's devices kept changing; try again",
  PayloadTooLarge: "the message is too large for the server",
  InvalidRequest: "the server refused the request as invalid",
  Unavailable: "the server is unavailable; try again later",
  Internal: "the server failed; try again later",
};

const CLIENT_FAILURES: Partial<Record<ClientError["code"], string>> = {
  Timeout: "timed out waiting for the server",
  Disconnected: "lost the connection to the server",
  ProtocolError: "the server answered something unexpected",
  NotRegistered: "this device is not registered: run 'pairwise register' or 'pairwise link-code'",
  UntrustedContact: "cannot verify the contact's devices",
  // StorageFailure: the client's own fixed texts ("cannot open the device's home directory",
  // "... is in use by another process", "cannot commit the device's state").
};

const CORE_FAILURES: Partial<Record<CoreError["code"], string>> = {
  BadSignature: "a signature did not verify: refusing to trust this data",
  IdentityKeyChanged: "the contact's security code changed",
  UntrustedDevice: "a device could not be verified",
  StorageFailure: "cannot read or write the device's state",
};

/** The message of a runtime error without its `Code: ` prefix (those messages are fixed texts). */
function bare(err: Error): string {
  return err.message.replace(/^[A-Za-z]+: /, "");
}

/**
 * Maps anything a command throws to an exit status and one line for stderr. Messages are fixed
 * texts per error code: never keys, message bodies or stack traces.
 */
export function describeFailure(err: unknown): { exitCode: number; message: string } {
  let message: string;
  let exitCode = 1;
  if (CliError.is(err)) {
    message = err.message;
    exitCode = exitCodeOf(err.code);
  } else if (ClientError.is(err)) {
    if (err.code === "ServerRefused")
      message = SERVER_REFUSALS[err.serverCode ?? ""] ?? "the server refused the request";
    else message = CLIENT_FAILURES[err.code] ?? bare(err);
  } else if (CoreError.is(err)) {
    message = CORE_FAILURES[err.code] ?? `a protocol check failed (${err.code})`;
  } else {
    message = `unexpected error (${err instanceof Error ? err.name : typeof err})`;
  }
  return { exitCode, message: message.replace(/\s*\n\s*/g, " ") };
}

/**
 * Runs `op`; a server refusal whose code is in `messages` becomes a `CliError` with that text
 * (so a command can say "the account name is taken" instead of a generic refusal).
 */
export async function explainRefusals<T>(
  op: Promise<T>,
  messages: Partial<Record<string, string>>,
): Promise<T> {
  try {
    return await op;
  } catch (err) {
    const text = ClientError.is(err, "ServerRefused") ? messages[err.serverCode ?? ""] : undefined;
    throw text === undefined ? err : new CliError("Failed", text, { cause: err });
  }
}
