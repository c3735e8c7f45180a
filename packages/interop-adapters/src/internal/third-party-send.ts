import { randomUUID } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseRemoteAddress, type PairwiseDevice } from "@pairwise/client";
import { newMessageId } from "@pairwise/core";
import { degradeContent, type AdapterCapabilities, type AdapterContent } from "./adapter.ts";
import { InteropError } from "./errors.ts";
import { getInteropSettings } from "./privacy.ts";

/** What {@link sendThirdParty} did. */
export interface ThirdPartySendResult {
  /** The Pairwise message id. */
  id: string;
  /** The content became a notice (or lost a reply reference) because the partner lacks it. */
  degraded: boolean;
}

/** When a partner's capabilities are not known yet (never reached), only text goes as is. */
const UNKNOWN: AdapterCapabilities = {
  endToEnd: true,
  text: true,
  photos: false,
  videos: false,
  voiceNotes: false,
  files: false,
  replies: false,
  reactions: false,
  stickers: false,
  disappearingTimers: false,
  groups: false,
};

/**
 * Sends content to a user of another provider (`name@provider`) as that provider can take it:
 * what its declared capabilities lack (reactions, stickers, disappearing timers, …) is sent as
 * a clear text notice instead, never dropped. Throws `InteropError("InvalidArgument")` for an
 * address of this provider, `ClientError` as any send does.
 */
export async function sendThirdParty(
  device: PairwiseDevice,
  to: string,
  content: AdapterContent,
): Promise<ThirdPartySendResult> {
  const remote = parseRemoteAddress(to);
  if (!remote) throw new InteropError("InvalidArgument", "not a name@provider address");
  const settings = await getInteropSettings(device);
  const caps =
    settings.partnerInfo.find((p) => p.name === remote.provider)?.capabilities ?? UNKNOWN;
  const { content: c, degraded } = degradeContent(content, caps, remote.provider);
  let id: string;
  switch (c.kind) {
    case "text":
      id = await device.sendText(to, c.text, c.replyTo ? { replyTo: c.replyTo } : {});
      break;
    case "photo":
    case "video":
    case "voice":
    case "file":
    case "sticker": {
      const dir = join(device.home, "outgoing", randomUUID());
      mkdirSync(dir, { recursive: true });
      const path = join(dir, c.kind === "sticker" ? "sticker.webp" : c.fileName);
      writeFileSync(path, c.data);
      id = await device.sendFile(
        to,
        path,
        c.kind !== "sticker" && c.caption ? { caption: c.caption } : {},
      );
      break;
    }
    case "reaction":
      id = newMessageId();
      await device.sendContent(to, {
        messageId: id,
        timestamp: BigInt(device.now()),
        body: { case: "reaction", value: { targetMessageId: c.target, emoji: c.emoji } },
      });
      break;
    case "timer":
      // Pairwise has no timer content yet: even a partner that declares timers gets a notice.
      id = await device.sendText(to, `[a disappearing-messages timer of ${c.seconds} s was set]`);
      return { id, degraded: true };
  }
  return { id, degraded };
}
