import { createInterface } from "node:readline";
import { sendGroupText, type StoredMessage } from "@pairwise/client";
import type { Command } from "../command.ts";
import { connectDevice, identityOf, withDevice } from "../device-session.ts";
import { messageJson, messageLine, warn } from "../output.ts";
import { parseAccountName } from "../validate.ts";

const GROUP_PREFIX = "group:";

/** `pairwise chat NAME|group:ID`: an interactive conversation. */
export const chatCommand: Command = {
  name: "chat",
  summary: "an interactive conversation: type to send, see messages as they arrive",
  synopsis: "chat NAME|group:ID",
  help: `Shows the recent conversation, then every new message of it as it arrives; each line you
type is sent. '/quit' (or end of input, or Ctrl-C) leaves. Works on a terminal and from a pipe.
With --json, messages are printed as JSON lines (as 'receive --json').`,
  options: {},
  positionals: ["NAME|group:ID"],
  budgetMs: () => undefined,
  interruptible: true,
  async run(ctx, { positionals }) {
    const chat = positionals[0] ?? "";
    if (!chat.startsWith(GROUP_PREFIX)) parseAccountName(chat, "NAME");
    await withDevice(ctx, async (device) => {
      const me = identityOf(ctx, device);
      const show = (m: StoredMessage) => {
        const json = messageJson(m, me.accountId);
        ctx.io.stdout(ctx.json ? `${JSON.stringify(json)}\n` : `${messageLine(json)}\n`);
      };
      for (const m of device.history(chat).slice(-20)) show(m);
      device.on("message", (m) => {
        if (m.chat === chat) show(m);
      });
      await connectDevice(ctx, device);
      await device.startReceiving();
      const lines = createInterface({ input: ctx.io.stdin, terminal: false });
      const stop = () => lines.close();
      ctx.io.signal.addEventListener("abort", stop, { once: true });
      try {
        for await (const line of lines) {
          const text = line.trim();
          if (text === "/quit") break;
          if (text === "") continue;
          try {
            if (chat.startsWith(GROUP_PREFIX))
              await sendGroupText(device, chat.slice(GROUP_PREFIX.length), text);
            else await device.sendText(chat, text);
          } catch (err) {
            warn(ctx, `not sent: ${(err as Error).message}`);
          }
        }
      } finally {
        ctx.io.signal.removeEventListener("abort", stop);
      }
      await device.drained().catch(() => undefined);
    });
  },
};
