import { acceptNewKey, securityCode, verifyContact } from "@pairwise/client";
import type { Command } from "../command.ts";
import { connectDevice, identityOf, withDevice } from "../device-session.ts";
import { CliError } from "../errors.ts";
import { printResult, warn } from "../output.ts";
import { parseAccountName } from "../validate.ts";

/** `pairwise safety-code NAME`. */
export const safetyCodeCommand: Command = {
  name: "safety-code",
  summary: "show the security code shared with a contact",
  synopsis: "safety-code NAME",
  help: `Shows the 60-digit security code (12 groups of 5) over your and NAME's account keys.
Compare it with NAME's, in person or over another channel, then run 'pairwise verify'.
Linking a companion does not change it; NAME registering anew (a new account key) does.

When NAME has registered anew since you last trusted its key, the code shown is still the old
one and a warning says so: run 'pairwise trust NAME' to accept the new key.

Output (--json): {"code":"12345 67890 ..."}`,
  options: {},
  positionals: ["NAME"],
  budgetMs: (ctx) => 4 * ctx.timeoutMs,
  async run(ctx, { positionals }) {
    const name = parseAccountName(positionals[0] ?? "", "NAME");
    const code = await withDevice(ctx, async (device) => {
      identityOf(ctx, device);
      await connectDevice(ctx, device);
      const current = await securityCode(device, name);
      if (device.crypto.state.getContactKey(name)?.pendingKey)
        warn(
          ctx,
          `the security code of ${name} changed (${name} registered anew); this is the old ` +
            `one: run 'pairwise trust ${name}' to accept the new key`,
        );
      return current;
    });
    printResult(ctx, { code: code.display }, code.groups.join(" "));
  },
};

/** `pairwise verify NAME CODE`. */
export const verifyCommand: Command = {
  name: "verify",
  summary: "mark a contact verified after comparing security codes",
  synopsis: "verify NAME CODE",
  help: `Marks NAME verified if CODE (the 60 digits NAME showed you; spaces ignored) matches the
security code; exits 1 and changes nothing if it does not.

Output (--json): {"verified":true}`,
  options: {},
  positionals: ["NAME", "CODE"],
  budgetMs: (ctx) => 4 * ctx.timeoutMs,
  async run(ctx, { positionals }) {
    const name = parseAccountName(positionals[0] ?? "", "NAME");
    await withDevice(ctx, async (device) => {
      identityOf(ctx, device);
      await connectDevice(ctx, device);
      await verifyContact(device, name, positionals[1] ?? "");
    });
    printResult(ctx, { verified: true }, `${name} is verified`);
  },
};

/** `pairwise trust NAME`: accept a contact's new account key after it registered anew. */
export const trustCommand: Command = {
  name: "trust",
  summary: "accept a contact's new key after it registered anew (new security code)",
  synopsis: "trust NAME",
  help: `When NAME registers anew (a new account key), sending to NAME fails and 'safety-code'
warns until you accept the new key. This accepts it: the new key is trusted (not verified), the
sessions with the old account's devices are dropped, and 'safety-code NAME' shows the new code.
It first asks the server for NAME's current key. Compare the new code and run 'pairwise
verify' to mark NAME verified again. Exits 1 and changes nothing when NAME's key has not
changed.

Output (--json): {"trusted":NAME}`,
  options: {},
  positionals: ["NAME"],
  budgetMs: (ctx) => 4 * ctx.timeoutMs,
  async run(ctx, { positionals }) {
    const name = parseAccountName(positionals[0] ?? "", "NAME");
    await withDevice(ctx, async (device) => {
      identityOf(ctx, device);
      await connectDevice(ctx, device);
      await device.refreshContact(name);
      if (!device.crypto.state.getContactKey(name)?.pendingKey)
        throw new CliError("Failed", `the key of ${name} has not changed`);
      acceptNewKey(device, name);
    });
    printResult(ctx, { trusted: name }, `accepted the new key of ${name}`);
  },
};
