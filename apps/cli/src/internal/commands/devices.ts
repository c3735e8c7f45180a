import { unlinkDevice } from "@pairwise/client";
import type { Command } from "../command.ts";
import { connectDevice, requirePrimary, withDevice } from "../device-session.ts";
import { explainRefusals, printResult } from "../output.ts";
import { parseCompanionId } from "../validate.ts";

/** One row of `pairwise devices --json`. */
export interface DeviceJson {
  id: number;
  name: string;
  /** When the device was linked (ms since the epoch). */
  linkedAt: number;
  /** When the server last saw it (ms since the epoch). */
  lastSeen: number;
  /** This device (the home the command ran in). */
  current: boolean;
}

const day = (ms: number) => (ms > 0 ? new Date(ms).toISOString().replace(/\.\d+Z$/, "Z") : "-");

/** The human table of `pairwise devices`. */
export function devicesTable(devices: readonly DeviceJson[]): string {
  const width = Math.max(4, ...devices.map((d) => d.name.length));
  const head = `${"ID".padStart(3)}  ${"NAME".padEnd(width)}  ${"LINKED".padEnd(20)}  LAST SEEN`;
  const rows = devices.map(
    (d) =>
      `${String(d.id).padStart(3)}  ${d.name.padEnd(width)}  ${day(d.linkedAt).padEnd(20)}  ` +
      `${day(d.lastSeen)}${d.current ? "  (this device)" : ""}`,
  );
  return [head, ...rows].join("\n");
}

/** `pairwise devices`: the account's devices as the server lists them. */
export const devicesCommand: Command = {
  name: "devices",
  summary: "list this account's devices",
  synopsis: "devices",
  help: `Lists the account's devices (primary and companions) as the server knows them.

Output (--json): [{"id":N,"name":STRING,"linkedAt":MS,"lastSeen":MS,"current":BOOLEAN}]
(times in ms since the epoch; "current" marks the device this home holds)`,
  options: {},
  positionals: [],
  budgetMs: (ctx) => 4 * ctx.timeoutMs,
  async run(ctx) {
    const devices = await withDevice(ctx, async (device) => {
      await connectDevice(ctx, device);
      return device.devices();
    });
    const rows: DeviceJson[] = devices.map((d) => ({
      id: d.id,
      name: d.name,
      linkedAt: d.linkedAt,
      lastSeen: d.lastSeen,
      current: d.current,
    }));
    printResult(ctx, rows, devicesTable(rows));
  },
};

/** `pairwise unlink DEVICE_ID`: the primary logs a companion out. */
export const unlinkCommand: Command = {
  name: "unlink",
  summary: "log a companion out of the account (primary only)",
  synopsis: "unlink DEVICE_ID",
  help: `Publishes a new signed device list without the companion; the server deletes it and
its queue and disconnects it. Contacts stop encrypting to it.

Output (--json): {"unlinked":N}`,
  options: {},
  positionals: ["DEVICE_ID"],
  budgetMs: (ctx) => 4 * ctx.timeoutMs,
  async run(ctx, { positionals }) {
    const deviceId = parseCompanionId(positionals[0] ?? "");
    await withDevice(ctx, async (device) => {
      requirePrimary(ctx, device, "unlink devices");
      await connectDevice(ctx, device);
      await explainRefusals(unlinkDevice(device, deviceId), {
        NotFound: `the account has no device ${String(deviceId)}`,
      });
    });
    printResult(ctx, { unlinked: deviceId }, `unlinked device ${String(deviceId)}`);
  },
};
