import { flagOption, stringOption, type Command } from "../command.ts";
import {
  connectDevice,
  identityOf,
  removeDeviceFiles,
  requirePrimary,
  withDevice,
  withNewDevice,
} from "../device-session.ts";
import { CliError } from "../errors.ts";
import { explainRefusals, printResult } from "../output.ts";
import { parseAccountName, parseDeviceName, parseServerUrl } from "../validate.ts";

/** `pairwise register`: a new account with this home as its primary device (device 1). */
export const registerCommand: Command = {
  name: "register",
  summary: "register a new account with this device as its primary (device 1)",
  synopsis: "register --server URL --name NAME [--device-name LABEL] [--invite TOKEN]",
  help: `Creates the account's keys in the home directory, uploads the public ones and becomes
device 1, the primary. The server URL is stored in the home; later commands use it.

Options:
  --server URL         the relay, ws:// or wss://
  --name NAME          the account name: 1-64 characters of a-z 0-9 . _ -
  --device-name LABEL  this device's name in the device list (default "primary")
  --invite TOKEN       an invite token, for servers that require one

Output (--json): {"account":NAME,"device":1}`,
  options: {
    server: { type: "string" },
    name: { type: "string" },
    "device-name": { type: "string" },
    invite: { type: "string" },
  },
  positionals: [],
  budgetMs: (ctx) => 4 * ctx.timeoutMs,
  async run(ctx, { values }) {
    const url = parseServerUrl(stringOption(values, "server"));
    const name = stringOption(values, "name");
    if (name === undefined) throw new CliError("Usage", "--name NAME is required");
    const accountId = parseAccountName(name, "--name");
    const label = stringOption(values, "device-name");
    const deviceName = label === undefined ? undefined : parseDeviceName(label);
    const invite = stringOption(values, "invite");
    const result = await withNewDevice(ctx, async (device) => {
      await connectDevice(ctx, device, { url });
      return explainRefusals(
        device.register({
          server: { url },
          accountId,
          ...(deviceName === undefined ? {} : { deviceName }),
          ...(invite === undefined ? {} : { inviteToken: invite }),
        }),
        {
          Conflict: `the account name ${accountId} is taken`,
          Unauthorized: "this server needs a valid invite: pass --invite TOKEN",
        },
      );
    });
    printResult(
      ctx,
      { account: result.accountId, device: result.deviceId },
      `registered ${result.accountId} with this device as its primary (device 1)`,
    );
  },
};

/** `pairwise delete-account --yes`: the primary deletes its account on the server. */
export const deleteAccountCommand: Command = {
  name: "delete-account",
  summary: "delete this account on the server and this device's files (primary only)",
  synopsis: "delete-account --yes",
  help: `Deletes the account on the server: every device, key and queued message goes, and its
companions are disconnected. Then removes this device's database (keys, sessions, history) from
the home, so 'pairwise register' can run there again. The name becomes free: registering it
anew creates a new account key, so contacts see a new security code. Files saved under the
home's files/ directory are kept. Refuses without --yes.

Options:
  -y, --yes  confirm the deletion

Output (--json): {"deleted":NAME}`,
  options: { yes: { type: "boolean", short: "y" } },
  positionals: [],
  budgetMs: (ctx) => 4 * ctx.timeoutMs,
  async run(ctx, { values }) {
    if (!flagOption(values, "yes"))
      throw new CliError("NotConfirmed", "refusing to delete the account without --yes");
    const accountId = await withDevice(ctx, async (device) => {
      const me = identityOf(ctx, device);
      requirePrimary(ctx, device, "delete the account");
      await connectDevice(ctx, device);
      await device.deleteAccount();
      return me.accountId;
    });
    removeDeviceFiles(ctx.home);
    printResult(ctx, { deleted: accountId }, `deleted account ${accountId}`);
  },
};
