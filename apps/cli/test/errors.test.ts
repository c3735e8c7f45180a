// Usage errors, help, refusals and unreachable servers, through the real `pairwise` program.
import { createEphemeralLinkKeys, createLinkSecret, encodeLinkUri } from "@pairwise/core";
import { afterAll, describe, expect, it } from "vitest";
import { freshHome, removeHomes, runCli } from "./fixtures/cli-process.ts";
import { closedPort, silentServer } from "./fixtures/server-process.ts";

const oneLine = /^pairwise: [^\n]+\n$/;

afterAll(() => {
  removeHomes();
});

describe("pairwise without a server", () => {
  it("exits 2 with one line on stderr for usage errors", async () => {
    const runs = await Promise.all([
      runCli([]),
      runCli(["bogus"]),
      runCli(["send", "bob"]),
      runCli(["receive", "--wait", "soon"]),
      runCli(["--timeout", "0", "devices"]),
      runCli(["register", "--server", "http://x", "--name", "a"]),
    ]);
    for (const r of runs)
      expect([r.code, r.stdout, r.stderr]).toEqual([2, "", expect.stringMatching(oneLine)]);
  });

  it("prints help for the program and for each command", async () => {
    const [all, send] = await Promise.all([runCli(["--help"]), runCli(["send", "--help"])]);
    expect(all.code).toBe(0);
    for (const c of [
      "register",
      "link-code",
      "link",
      "send",
      "receive",
      "devices",
      "unlink",
      "trust",
      "delete-account",
    ])
      expect(all.stdout).toMatch(new RegExp(`^  ${c}( |$)`, "m"));
    expect(send.code).toBe(0);
    expect(send.stdout).toMatch(/^usage: pairwise send TO TEXT\n/);
  });

  it("fails with exit 1 on an unregistered home, a group, an unconfirmed link or deletion", async () => {
    const uri = encodeLinkUri({
      ref: "A".repeat(22),
      ephemeralPublic: createEphemeralLinkKeys().publicKey,
      identityPublic: new Uint8Array(33).fill(5),
      secret: createLinkSecret(),
    });
    const home = freshHome("none");
    const [devices, group, link, unconfirmed, deletion, trust] = await Promise.all([
      runCli(["--home", home, "devices"]),
      runCli(["--home", home, "send", "group:g1", "hi"]),
      runCli(["--home", home, "link", uri]),
      runCli(["--home", home, "delete-account"]),
      runCli(["--home", home, "delete-account", "--yes"]),
      runCli(["--home", home, "trust", "bob"]),
    ]);
    expect(devices.code).toBe(1);
    expect(devices.stderr).toMatch(/no registered device in .*: run 'pairwise register'/);
    expect(group.code).toBe(1);
    expect(group.stderr).toMatch(/no registered device in .*: run 'pairwise register'/);
    expect(link.code).toBe(1);
    expect(link.stderr).toMatch(/refusing to link without confirmation/);
    expect([unconfirmed.code, unconfirmed.stderr]).toEqual([
      1,
      "pairwise: refusing to delete the account without --yes\n",
    ]);
    for (const r of [deletion, trust]) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/no registered device in .*: run 'pairwise register'/);
    }
    for (const r of [devices, group, link, unconfirmed, deletion, trust])
      expect(r.stderr).toMatch(oneLine);
  });

  it("gives up on an unreachable or silent server with exit 1 within --timeout", async () => {
    const port = await closedPort();
    const silent = await silentServer();
    try {
      const [closed, hung, linkHung] = await Promise.all([
        runCli(
          [
            "--home",
            freshHome("c"),
            "--timeout",
            "2",
            "register",
            "--server",
            `ws://127.0.0.1:${port}`,
            "--name",
            "c",
          ],
          15_000,
        ),
        runCli(
          [
            "--home",
            freshHome("h"),
            "--timeout",
            "2",
            "register",
            "--server",
            silent.url,
            "--name",
            "h",
          ],
          15_000,
        ),
        runCli(
          ["--home", freshHome("l"), "--timeout", "2", "link-code", "--server", silent.url],
          15_000,
        ),
      ]);
      for (const r of [closed, hung, linkHung]) {
        expect([r.code, r.stdout, r.stderr]).toEqual([
          1,
          "",
          expect.stringMatching(/^pairwise: cannot reach the server at ws:[^\n]+\n$/),
        ]);
        expect(r.ms).toBeLessThan(10_000); // --timeout 2 plus process start-up, well below the default 15 s
      }
    } finally {
      await silent.close();
    }
  });
});
