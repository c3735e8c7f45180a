import { describe, expect, it } from "vitest";
import { capabilityList, defineCapabilities, degradeContent } from "./adapter.ts";

describe("adapter capabilities", () => {
  const caps = defineCapabilities(false, ["text", "photos", "voiceNotes"]);

  it("declares only what is named, and says whether it is end-to-end", () => {
    expect(caps.endToEnd).toBe(false);
    expect(capabilityList(caps)).toEqual(["text", "photos", "voiceNotes"]);
    expect(caps.stickers).toBe(false);
  });

  it("passes supported content through unchanged", () => {
    const photo = { kind: "photo" as const, data: new Uint8Array([1]), fileName: "a.jpg" };
    expect(degradeContent(photo, caps, "telegram")).toEqual({ content: photo, degraded: false });
  });

  it("turns unsupported content into a notice instead of dropping it", () => {
    for (const [content, what] of [
      [{ kind: "sticker" as const, data: new Uint8Array([1]) }, "a sticker"],
      [{ kind: "reaction" as const, emoji: "👍", target: "m1" }, "a reaction"],
      [{ kind: "timer" as const, seconds: 60 }, "a disappearing-messages timer"],
      [{ kind: "video" as const, data: new Uint8Array([1]), fileName: "v.mp4" }, "a video"],
    ] as const) {
      const out = degradeContent(content, caps, "provx");
      expect(out.degraded).toBe(true);
      expect(out.content).toEqual({
        kind: "text",
        text: `[${what} was sent here, but provx does not support it]`,
      });
    }
  });

  it("drops a reply reference the other side cannot show, and says it degraded", () => {
    const voice = {
      kind: "voice" as const,
      data: new Uint8Array([1]),
      fileName: "v.ogg",
      replyTo: "m1",
    };
    const out = degradeContent(voice, caps, "provx");
    expect(out.degraded).toBe(true);
    expect(out.content).not.toHaveProperty("replyTo");
  });
});
