import { createWriteStream, mkdirSync, rmSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { markRead, sendGroupText, type PairwiseDevice } from "@pairwise/client";
import { newMessageId } from "@pairwise/core";
import type { ApiCalls } from "./api.ts";

const opt = <K extends string, V>(key: K, value: V | undefined) =>
  (value !== undefined ? { [key]: value } : {}) as Partial<Record<K, V>>;

/**
 * Performs one API call on a device: the end of a bot's API chain. A stream to send as a file is
 * first written to `outgoingDir` (removed afterwards). Throws what `@pairwise/client` throws.
 */
export async function performCall(
  device: PairwiseDevice,
  method: keyof ApiCalls,
  payload: ApiCalls[keyof ApiCalls]["payload"],
  options: { outgoingDir: string },
): Promise<unknown> {
  switch (method) {
    case "sendText": {
      const p = payload as ApiCalls["sendText"]["payload"];
      if (p.to.startsWith("group:"))
        return {
          id: await sendGroupText(device, p.to.slice(6), p.text, opt("messageId", p.messageId)),
        };
      return {
        id: await device.sendText(p.to, p.text, {
          ...opt("messageId", p.messageId),
          ...opt("replyTo", p.replyTo),
        }),
      };
    }
    case "sendFile": {
      const p = payload as ApiCalls["sendFile"]["payload"];
      let path = typeof p.file === "string" ? p.file : undefined;
      let temp: string | undefined;
      if (path === undefined) {
        mkdirSync(options.outgoingDir, { recursive: true, mode: 0o700 });
        const name = `${p.messageId ?? randomUUID()}-${p.fileName ?? "file"}`;
        temp = join(options.outgoingDir, name.replace(/[/\\]/g, "_"));
        await pipeline(p.file, createWriteStream(temp, { mode: 0o600 }));
        path = temp;
      }
      try {
        return {
          id: await device.sendFile(p.to, path, {
            ...opt("caption", p.caption),
            ...opt("messageId", p.messageId),
          }),
        };
      } finally {
        if (temp) rmSync(temp, { force: true });
      }
    }
    case "react": {
      const p = payload as ApiCalls["react"]["payload"];
      const id = p.messageId ?? newMessageId();
      await device.sendContent(p.to, {
        messageId: id,
        timestamp: BigInt(device.now()),
        body: { case: "reaction", value: { targetMessageId: p.target, emoji: p.emoji } },
      });
      return { id };
    }
    case "markRead": {
      const p = payload as ApiCalls["markRead"]["payload"];
      return { count: await markRead(device, p.chat) };
    }
  }
}
