import { describe, expect, it } from "vitest";
import { renderQr } from "./qr.ts";

describe("renderQr", () => {
  it("draws a multi-line block-character QR code that depends on the text", () => {
    const a = renderQr("pairwise://link?v=1&ref=aaaaaaaaaaaaaaaa");
    const b = renderQr("pairwise://link?v=1&ref=bbbbbbbbbbbbbbbb");
    expect(a.split("\n").length).toBeGreaterThan(10);
    expect(a).toMatch(/[▀▄█]/);
    expect(a).not.toBe(b);
  });
});
