import { sendGroupText, type StoredMessage } from "@pairwise/client";
import { stringOption, type Command } from "../command.ts";
import { parseSeconds } from "../args.ts";
import {
  connectDevice,
  identityOf,
  openDevice,
  closeDevice,
  withDevice,
} from "../device-session.ts";
import { usageError } from "../errors.ts";
import { sleep } from "../io.ts";
import {
  explainRefusals,
  messageJson,
  messageLine,
  printResult,
  warn,
  type MessageJson,
} from "../output.ts";
import { parseRecipient } from "../validate.ts";

const GROUP_PREFIX = "group:";
/** How long `receive` stays after the last incoming message so delivery receipts can go out. */
const RECEIPT_GRACE_MS = 500;

/** `pairwise send TO TEXT`. */
export const sendCommand: Command = {
  name: "send",
  summary: "send a text message to an account",
  synopsis: "send TO TEXT",
  help: `Encrypts TEXT separately to every verified device of account TO and to this account's
other devices (as sync copies), and hands all copies to the server in one request.
TO is an account name, name@provider for a user of another provider (a third-party chat:
enable it first with 'pairwise interop enable PROVIDER'), or group:ID for a group (one Sender
Key ciphertext that the server fans out). Put '--' before a TEXT that begins with '-'.

Output (--json): {"id":MESSAGE_ID}`,
  options: {},
  positionals: ["TO", "TEXT"],
  budgetMs: (ctx) => 4 * ctx.timeoutMs,
  async run(ctx, { positionals }) {
    const [to = "", text = ""] = positionals;
    if (!to.startsWith(GROUP_PREFIX)) parseRecipient(to, "TO");
    if (text === "") throw usageError("TEXT must not be empty");
    const id = await withDevice(ctx, async (device) => {
      identityOf(ctx, device);
      await connectDevice(ctx, device);
      if (to.startsWith(GROUP_PREFIX)) {
        return explainRefusals(sendGroupText(device, to.slice(GROUP_PREFIX.length), text), {
          NotFound: "no such group",
        });
      }
      return explainRefusals(device.sendText(to, text), refusalsFor(to));
    });
    printResult(ctx, { id }, `sent ${id}`);
  },
};

/** What a refused send means, for a local or a third-party recipient. */
export function refusalsFor(to: string): Partial<Record<string, string>> {
  const provider = to.includes("@") ? to.slice(to.indexOf("@") + 1) : undefined;
  if (provider === undefined) return { NotFound: `no account named ${to}` };
  return {
    NotFound: `no account named ${to} that accepts chats from your provider (or ${provider} is not a partner of your server)`,
    Unauthorized: `third-party chats with ${provider} are off: run 'pairwise interop enable ${provider}'`,
    Unavailable: `${provider} cannot be reached or was refused by your server; try again later`,
  };
}

/** `pairwise receive [--wait SECONDS]`. */
export const receiveCommand: Command = {
  name: "receive",
  summary: "fetch queued messages, optionally keep listening, then exit",
  synopsis: "receive [--wait SECONDS]",
  help: `Connects, takes every message queued for this device (each is stored in the local
history before the server may delete it), keeps listening for --wait seconds (default 0), then
exits. Ctrl-C stops listening early. Each message is printed once: a message already received
is never printed again. A message is stored before it is printed and recorded as printed right
after, so a run killed in between (kill -9, power loss) never loses one: the next run prints
what the killed run stored but had not printed. Only a kill landing exactly between printing a
line and recording it can print that one line again (with the same id).

Options:
  --wait SECONDS  keep listening this long after the queue is empty (default 0)

Output (--json): one JSON line per message, as it arrives:
  {"id":STRING,"from":ACCOUNT,"fromDevice":N,"to":ACCOUNT,"text":STRING,"timestamp":MS,"sync":BOOLEAN}
"to" is this account for received messages; for sync copies of messages sent by another of
this account's devices ("sync":true) it is the original recipient; for group messages it is
group:ID. A file message adds "file" (where it was saved; "text" is then its caption).`,
  options: { wait: { type: "string" } },
  positionals: [],
  interruptible: true,
  budgetMs: (ctx, { values }) => waitMs(stringOption(values, "wait")) + 4 * ctx.timeoutMs,
  async run(ctx, { values }) {
    const wait = waitMs(stringOption(values, "wait"));
    const device = openDevice(ctx);
    try {
      const me = identityOf(ctx, device).accountId;
      let count = 0;
      let incoming = 0;
      // A message is printed from the device's durable inbox: stored (with the session update)
      // in one transaction, then printed, then taken out of the inbox, then acknowledged. A run
      // killed after storing and before printing leaves it in the inbox, and the next run prints
      // it first (the server's redelivery is absorbed as a duplicate).
      const show = (m: StoredMessage) => {
        count++;
        if (!m.outgoing) incoming++;
        const json = messageJson(m, me);
        ctx.io.stdout(ctx.json ? `${JSON.stringify(json)}\n` : `${messageLine(json)}\n`);
        device.markHandled(m.id);
      };
      for (const m of device.unhandledMessages()) show(m);
      device.setInboundHandler((m) => {
        show(m);
        return Promise.resolve();
      });
      device.on("decrypt-failed", ({ from, code }) => {
        warn(
          ctx,
          from.accountId === ""
            ? `could not finish a received file or history import (${code})`
            : `could not decrypt a message from ${from.accountId}#${String(from.deviceId)} (${code})`,
        );
      });
      device.on("warning", ({ days }) => {
        warn(ctx, `the primary has been offline for ${String(days)} days; open it before day 14`);
      });
      device.on("connection", ({ state }) => {
        if (state === "logged-out") warn(ctx, "this device was logged out of its account");
      });
      device.on("untrusted-device", ({ from }) =>
        warn(
          ctx,
          `dropped a message from ${from.accountId}#${String(from.deviceId)}: not a verified device`,
        ),
      );
      device.on("account-key-changed", ({ accountId }) =>
        warn(ctx, `the security code of ${accountId} changed`),
      );
      await connectDevice(ctx, device);
      await device.startReceiving();
      await device.drained();
      if (wait > 0) await sleep(wait, ctx.io.signal);
      // Let messages that arrived while listening finish (stored, acknowledged, printed).
      await device.drained();
      // Delivery receipts go out in batches shortly after a message is stored; give them a
      // moment (best effort: the runtime offers no way to await them).
      if (incoming > 0) await sleep(RECEIPT_GRACE_MS, ctx.io.signal);
      if (!ctx.json && count === 0) ctx.io.stdout("no new messages\n");
    } finally {
      await closeDevice(device);
    }
  },
};

function waitMs(value: string | undefined): number {
  return value === undefined ? 0 : Math.round(parseSeconds(value, "--wait", 0) * 1000);
}

/** `pairwise history NAME`: the local conversation, no server needed. */
export const historyCommand: Command = {
  name: "history",
  summary: "show the local conversation with an account",
  synopsis: "history NAME",
  help: `Prints the conversation with account NAME stored on this device, oldest first: messages
received, sent from this device, and sync copies of those sent from this account's other
devices. Needs no server.

Output (--json): an array of messages, each as 'pairwise receive --json' prints them.`,
  options: {},
  positionals: ["NAME"],
  budgetMs: () => undefined,
  async run(ctx, { positionals }) {
    const name = positionals[0] ?? "";
    if (!name.startsWith(GROUP_PREFIX)) parseRecipient(name, "NAME");
    const messages: MessageJson[] = await withDevice(ctx, (device) => {
      const me = identityOf(ctx, device).accountId;
      return Promise.resolve(device.history(name).map((m) => messageJson(m, me)));
    });
    printResult(
      ctx,
      messages,
      messages.length === 0 ? `no messages with ${name}` : messages.map(messageLine).join("\n"),
    );
  },
};

/** `pairwise send-file TO PATH`. */
export const sendFileCommand: Command = {
  name: "send-file",
  summary: "send a file to an account",
  synopsis: "send-file TO PATH",
  help: `Encrypts the file with a fresh key (streamed, any size), uploads the ciphertext, and sends
every device of TO (and your other devices) a message carrying the key and digest. The
recipient saves it under its home's files/ directory; 'receive --json' shows the path as "file".

Output (--json): {"id":MESSAGE_ID}`,
  options: {},
  positionals: ["TO", "PATH"],
  budgetMs: () => undefined,
  async run(ctx, { positionals }) {
    const [to = "", path = ""] = positionals;
    parseRecipient(to, "TO");
    if (path === "") throw usageError("PATH must not be empty");
    const id = await withDevice(ctx, async (device) => {
      identityOf(ctx, device);
      await connectDevice(ctx, device);
      return explainRefusals(device.sendFile(to, path), refusalsFor(to));
    });
    printResult(ctx, { id }, `sent ${id}`);
  },
};
