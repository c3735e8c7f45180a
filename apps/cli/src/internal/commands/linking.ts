import { ClientError, approveLink, linkAsCompanion, type LinkRequest } from "@pairwise/client";
import { renderQr } from "../qr.ts";
import { decodeLinkUri } from "@pairwise/core";
import { flagOption, stringOption, type Command } from "../command.ts";
import { connectDevice, requirePrimary, withDevice, withNewDevice } from "../device-session.ts";
import { CliError, usageError } from "../errors.ts";
import type { CliContext } from "../io.ts";
import { explainRefusals, printResult } from "../output.ts";
import { confirm } from "../prompt.ts";
import { defaultDeviceName, parseDeviceName, parseServerUrl } from "../validate.ts";

/** How long `link-code` waits for approval when `--timeout` is not given. */
export const DEFAULT_APPROVAL_MS = 120_000;

function approvalMs(ctx: CliContext): number {
  return ctx.timeoutGiven ? ctx.timeoutMs : DEFAULT_APPROVAL_MS;
}

const seconds = (ms: number) => String(Math.round(ms / 100) / 10);

/** `pairwise link-code`: this home becomes a companion once the primary approves its code. */
export const linkCodeCommand: Command = {
  name: "link-code",
  summary: "show a link code; become a companion once the account's primary approves it",
  synopsis: "link-code --server URL [--device-name LABEL] [--timeout SECONDS]",
  help: `Creates this device's keys, opens a provisioning channel on the server and prints the
link URI (pairwise://link?...) as the first line of stdout. The code rotates while it waits:
each new URI is printed as a further line. Run 'pairwise link URI' on the account's primary.
Once approved it prints the result and exits 0; if nobody approves in time it exits 1.
When stderr is a terminal, the code is also drawn there as a QR code.

Options:
  --server URL         the relay, ws:// or wss://
  --device-name LABEL  this device's name in the device list (default: the host name)
  --timeout SECONDS    how long to wait for approval (default 120 for this command),
                       and for the server

Output: the URI line(s), then the result; with --json {"linked":true,"account":NAME,"device":N}`,
  options: {
    server: { type: "string" },
    "device-name": { type: "string" },
  },
  positionals: [],
  budgetMs: (ctx) => approvalMs(ctx) + 4 * ctx.timeoutMs,
  async run(ctx, { values }) {
    const url = parseServerUrl(stringOption(values, "server"));
    const label = stringOption(values, "device-name");
    const deviceName =
      label === undefined ? defaultDeviceName(ctx.io.hostname) : parseDeviceName(label);
    const waitMs = approvalMs(ctx);
    const result = await withNewDevice(ctx, async (device) => {
      let firstShownAt: number | undefined;
      const linked = linkAsCompanion(device, {
        server: { url },
        deviceName,
        timeoutMs: waitMs,
        onLinkCode: (uri) => {
          ctx.io.stdout(`${uri}\n`);
          if (firstShownAt !== undefined) return;
          firstShownAt = Date.now();
          if (ctx.io.stderrIsTTY)
            ctx.io.stderr(
              `${renderQr(uri)}\nScan it, or on the account's primary run:\n  pairwise link '${uri}'\n` +
                `Waiting up to ${seconds(waitMs)} s for approval...\n`,
            );
        },
      });
      try {
        return await explainRefusals(linked, {
          Expired: "the link code expired before it was approved",
        });
      } catch (err) {
        // The approval deadline is a ClientError("Timeout") too; tell it from a slow server.
        if (
          ClientError.is(err, "Timeout") &&
          firstShownAt !== undefined &&
          Date.now() - firstShownAt >= waitMs - 50
        )
          throw new CliError(
            "Timeout",
            `the link code was not approved within ${seconds(waitMs)} s`,
            {
              cause: err,
            },
          );
        if (ClientError.is(err, "Disconnected") && firstShownAt === undefined)
          throw new CliError("Failed", `cannot reach the server at ${url}`, { cause: err });
        throw err;
      }
    });
    printResult(
      ctx,
      { linked: true, account: result.accountId, device: result.deviceId },
      `linked to account ${result.accountId} as device ${String(result.deviceId)}`,
    );
  },
};

/** A short, readable fingerprint of a public key (hex in groups of four), for the prompt. */
export function fingerprint(key: Uint8Array): string {
  const hex = Buffer.from(key).toString("hex").slice(0, 32);
  return hex.replace(/(.{4})(?=.)/g, "$1 ");
}

function asker(ctx: CliContext, yes: boolean): (request: LinkRequest) => Promise<boolean> {
  if (yes) return () => Promise.resolve(true);
  return (request) => {
    ctx.io.stderr(
      `A new device asks to join this account.\n` +
        `Its identity key begins: ${fingerprint(request.identityKey)}\n`,
    );
    return confirm(ctx.io, "Link this device?");
  };
}

/** `pairwise link URI`: the primary approves a companion's link code. */
export const linkCommand: Command = {
  name: "link",
  summary: "approve a new device's link code (primary only)",
  synopsis: "link URI [--yes]",
  help: `Decodes the link URI printed by 'pairwise link-code' on the new device, asks for
confirmation ("Link this device? [y/N]" on the terminal), signs the new device's identity with
the account key, publishes a new signed device list naming it and sends the new device,
end-to-end encrypted, what it needs to join. Then it waits (up to --timeout) for the new
device to register and sends it the recent conversations (history sync), which the new device
imports at its first 'pairwise receive'. Without a terminal, --yes is required.

Options:
  -y, --yes  link without asking

Output (--json): {"device":N}, the new device's id`,
  options: { yes: { type: "boolean", short: "y" } },
  positionals: ["URI"],
  // Linking, then waiting for the companion to register and uploading recent history to it.
  budgetMs: (ctx, { values }) => (flagOption(values, "yes") ? 6 * ctx.timeoutMs : undefined),
  async run(ctx, { values, positionals }) {
    const uri = positionals[0] ?? "";
    try {
      decodeLinkUri(uri);
    } catch {
      throw usageError("URI is not a valid link code (pairwise://link?v=1&...)");
    }
    const yes = flagOption(values, "yes");
    if (!yes && !(ctx.io.stdinIsTTY && ctx.io.stderrIsTTY))
      throw new CliError(
        "NotConfirmed",
        "refusing to link without confirmation: run it in a terminal or pass --yes",
      );
    const result = await withDevice(ctx, async (device) => {
      requirePrimary(ctx, device, "link devices");
      await connectDevice(ctx, device);
      try {
        const approval = approveLink(device, uri, asker(ctx, yes), {
          historyTimeoutMs: ctx.timeoutMs,
        });
        return await explainRefusals(approval, {
          Expired: "the link code expired; show a fresh one on the new device",
          NotFound: "the link code expired; show a fresh one on the new device",
        });
      } catch (err) {
        if (ClientError.is(err, "LinkFailed"))
          throw new CliError("NotConfirmed", "linking was not confirmed", { cause: err });
        throw err;
      }
    });
    printResult(ctx, { device: result.deviceId }, `linked device ${String(result.deviceId)}`);
  },
};
