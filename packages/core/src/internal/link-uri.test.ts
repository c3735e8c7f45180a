import { createHmac } from "node:crypto";
import { IdentityKeyPair, PrivateKey } from "@signalapp/libsignal-client";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fromHex, toBase64Url } from "./bytes.ts";
import { CoreError } from "./errors.ts";
import {
  LINK_URI_MAX_LENGTH,
  computeLinkHmac,
  createEphemeralLinkKeys,
  createLinkSecret,
  decodeLinkUri,
  encodeLinkUri,
  verifyLinkHmac,
} from "./link-uri.ts";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return CoreError.is(err) ? err.code : "not a CoreError";
  }
  return undefined;
}

const fixed = {
  ref: "ref_0123456789-ABCDEF",
  ephemeralPublic: new Uint8Array(32).fill(0x11),
  identityPublic: fromHex(`05${"22".repeat(32)}`, "id"),
  secret: new Uint8Array(32).fill(0x33),
};
const fixedUri =
  "pairwise://link?v=1&ref=ref_0123456789-ABCDEF" +
  `&pub=${toBase64Url(fixed.ephemeralPublic)}` +
  `&id=${toBase64Url(fixed.identityPublic)}` +
  `&secret=${toBase64Url(fixed.secret)}`;

function freshFields() {
  return {
    ref: "AAAAAAAAAAAAAAAAAAAAAA",
    ephemeralPublic: createEphemeralLinkKeys().publicKey,
    identityPublic: IdentityKeyPair.generate().publicKey.serialize(),
    secret: createLinkSecret(),
  };
}

describe("link URI", () => {
  it("encodes the documented layout", () => {
    expect(encodeLinkUri(fixed)).toBe(fixedUri);
    expect(fixedUri).toBe(
      "pairwise://link?v=1&ref=ref_0123456789-ABCDEF&pub=ERERERERERERERERERERERERERERERERERERERERERE" +
        "&id=BSIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIi&secret=MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM",
    );
  });

  it("round-trips fresh keys", () => {
    const fields = freshFields();
    const uri = encodeLinkUri(fields);
    expect(uri.length).toBeLessThan(LINK_URI_MAX_LENGTH);
    expect(decodeLinkUri(uri)).toEqual(fields);
  });

  it("accepts the parameters in any order", () => {
    const [prefix, query] = fixedUri.split("?") as [string, string];
    const reordered = `${prefix}?${query.split("&").reverse().join("&")}`;
    expect(decodeLinkUri(reordered)).toEqual(decodeLinkUri(fixedUri));
  });

  const pub = toBase64Url(fixed.ephemeralPublic);
  const id = toBase64Url(fixed.identityPublic);
  const secret = toBase64Url(fixed.secret);
  const bad: [string, string][] = [
    ["other scheme", fixedUri.replace("pairwise:", "pairwize:")],
    ["upper-case scheme", fixedUri.replace("pairwise:", "PAIRWISE:")],
    ["other host", fixedUri.replace("//link", "//lnk")],
    ["a path", fixedUri.replace("link?", "link/?")],
    ["version 2", fixedUri.replace("v=1", "v=2")],
    ["version 01", fixedUri.replace("v=1", "v=01")],
    ["missing secret", fixedUri.replace(`&secret=${secret}`, "")],
    ["repeated ref", `${fixedUri}&ref=ref_0123456789-ABCDEF`],
    ["unknown parameter", `${fixedUri}&x=1`],
    ["trailing &", `${fixedUri}&`],
    ["empty value", fixedUri.replace(`id=${id}`, "id=")],
    ["no =", fixedUri.replace("v=1&", "v&")],
    ["padding", fixedUri.replace(`pub=${pub}`, `pub=${pub}=`)],
    ["percent escape", fixedUri.replace("ref_", "ref%5F")],
    ["fragment", `${fixedUri}#x`],
    ["space", fixedUri.replace("&ref", " &ref")],
    ["short ref", fixedUri.replace("ref_0123456789-ABCDEF", "short")],
    ["long ref", fixedUri.replace("ref_0123456789-ABCDEF", "r".repeat(65))],
    ["33-byte pub", fixedUri.replace(`pub=${pub}`, `pub=${toBase64Url(fixed.identityPublic)}`)],
    ["32-byte id", fixedUri.replace(`id=${id}`, `id=${pub}`)],
    [
      "id of type 6",
      fixedUri.replace(`id=${id}`, `id=${toBase64Url(fromHex(`06${"22".repeat(32)}`, "x"))}`),
    ],
    [
      "31-byte secret",
      fixedUri.replace(`secret=${secret}`, `secret=${toBase64Url(new Uint8Array(31))}`),
    ],
    ["non-canonical base64url", fixedUri.replace(`pub=${pub}`, `pub=${pub.slice(0, -1)}F`)],
  ];
  it.each(bad)("rejects %s", (_name, uri) => {
    expect(codeOf(() => decodeLinkUri(uri))).toBe("MalformedInput");
  });

  it("rejects an over-long URI before parsing", () => {
    expect(codeOf(() => decodeLinkUri(`${fixedUri}&${"x".repeat(LINK_URI_MAX_LENGTH)}`))).toBe(
      "InputTooLarge",
    );
  });

  it("refuses to encode bad fields", () => {
    expect(codeOf(() => encodeLinkUri({ ...fixed, ref: "has space in it!!" }))).toBe(
      "InvalidArgument",
    );
    expect(codeOf(() => encodeLinkUri({ ...fixed, secret: new Uint8Array(16) }))).toBe(
      "InvalidArgument",
    );
    expect(codeOf(() => encodeLinkUri({ ...fixed, ephemeralPublic: new Uint8Array(33) }))).toBe(
      "InvalidArgument",
    );
    expect(codeOf(() => encodeLinkUri({ ...fixed, identityPublic: new Uint8Array(33) }))).toBe(
      "InvalidKey",
    );
  });

  it("throws only CoreError on random text", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 600 }), (text) => {
        expect(codeOf(() => decodeLinkUri(text))).toMatch(/^(MalformedInput|InputTooLarge)$/);
      }),
      { numRuns: 200 },
    );
  });

  it("throws only CoreError on mutated URIs, or decodes them", () => {
    fc.assert(
      fc.property(
        fc.nat({ max: fixedUri.length - 1 }),
        fc.nat({ max: fixedUri.length }),
        fc.string({ maxLength: 4 }),
        (start, length, insert) => {
          const mutated = fixedUri.slice(0, start) + insert + fixedUri.slice(start + length);
          const code = codeOf(() => decodeLinkUri(mutated));
          expect(code === undefined || code === "MalformedInput" || code === "InputTooLarge").toBe(
            true,
          );
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("link keys", () => {
  it("returns a raw X25519 public key that matches the private key", () => {
    const keys = createEphemeralLinkKeys();
    expect(keys.privateKey).toHaveLength(32);
    expect(keys.publicKey).toHaveLength(32);
    const libsignalPublic = PrivateKey.deserialize(keys.privateKey).getPublicKey().serialize();
    expect(libsignalPublic[0]).toBe(0x05);
    expect(libsignalPublic.subarray(1)).toEqual(keys.publicKey);
  });

  it("derives keys from injected randomness", () => {
    const random = (n: number) => new Uint8Array(n).fill(7);
    expect(createEphemeralLinkKeys({ random })).toEqual(createEphemeralLinkKeys({ random }));
    expect(createLinkSecret({ random })).toEqual(new Uint8Array(32).fill(7));
    expect(codeOf(() => createLinkSecret({ random: () => new Uint8Array(8) }))).toBe(
      "InvalidArgument",
    );
  });

  it("creates distinct secrets", () => {
    expect(createLinkSecret()).not.toEqual(createLinkSecret());
  });
});

describe("link HMAC", () => {
  const details = new TextEncoder().encode("DeviceIdentity bytes");

  it("is HMAC-SHA256 of the details under the link secret", () => {
    const expected = createHmac("sha256", fixed.secret).update(details).digest();
    expect(Buffer.from(computeLinkHmac(fixed.secret, details))).toEqual(expected);
  });

  it("verifies only the right MAC", () => {
    const mac = computeLinkHmac(fixed.secret, details);
    expect(verifyLinkHmac(fixed.secret, details, mac)).toBe(true);
    const flipped = new Uint8Array(mac);
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    expect(verifyLinkHmac(fixed.secret, details, flipped)).toBe(false);
    expect(verifyLinkHmac(fixed.secret, details, mac.subarray(0, 16))).toBe(false);
    expect(verifyLinkHmac(fixed.secret, new Uint8Array(0), mac)).toBe(false);
    expect(verifyLinkHmac(new Uint8Array(32), details, mac)).toBe(false);
  });

  it("rejects a secret of the wrong size", () => {
    expect(codeOf(() => computeLinkHmac(new Uint8Array(31), details))).toBe("InvalidArgument");
    expect(codeOf(() => verifyLinkHmac(new Uint8Array(33), details, new Uint8Array(32)))).toBe(
      "InvalidArgument",
    );
  });
});
