import { ClientError, type StoredMessage } from "@pairwise/client";
import { CoreError } from "@pairwise/core";
import { describe, expect, it } from "vitest";
import { CliError, usageError } from "./errors.ts";
import { describeFailure, explainRefusals, messageJson, messageLine } from "./output.ts";

const stored = (over: Partial<StoredMessage>): StoredMessage => ({
  id: "m1",
  chat: "bob",
  fromAccount: "bob",
  fromDevice: 2,
  outgoing: false,
  sync: false,
  text: "hi",
  timestamp: 0,
  ...over,
});

describe("messageJson", () => {
  it("addresses received messages to us and our own messages to the other side", () => {
    expect(messageJson(stored({}), "alice")).toEqual({
      id: "m1",
      from: "bob",
      fromDevice: 2,
      to: "alice",
      text: "hi",
      timestamp: 0,
      sync: false,
    });
    const sync = stored({ fromAccount: "alice", fromDevice: 1, outgoing: true, sync: true });
    expect(messageJson(sync, "alice")).toMatchObject({ from: "alice", to: "bob", sync: true });
    expect(messageLine(messageJson(sync, "alice"))).toBe(
      "1970-01-01T00:00:00.000Z  alice#1 -> bob (sent from another of your devices): hi",
    );
  });

  it("addresses group messages to the group and adds the saved file of file messages", () => {
    const group = stored({ chat: "group:g1" });
    expect(messageJson(group, "alice").to).toBe("group:g1");
    const file = messageJson(stored({ file: "/h/files/a.txt", text: "see" }), "alice");
    expect(file).toMatchObject({ file: "/h/files/a.txt", text: "see" });
    expect(messageLine(file)).toMatch(/bob#2 -> alice: \[file \/h\/files\/a\.txt\] see$/);
    expect("file" in messageJson(stored({}), "alice")).toBe(false);
  });
});

describe("describeFailure", () => {
  it("maps CLI errors to their exit status and keeps their message", () => {
    expect(describeFailure(usageError("missing command"))).toEqual({
      exitCode: 2,
      message: "missing command",
    });
    expect(describeFailure(new CliError("Interrupted", "interrupted")).exitCode).toBe(130);
    expect(describeFailure(new CliError("Timeout", "a\nb")).message).toBe("a b");
  });

  it("gives runtime errors fixed texts, never their details", () => {
    const refused = new ClientError("ServerRefused", "secret-ish server text", {
      serverCode: "TooManyDevices",
    });
    expect(describeFailure(refused)).toEqual({
      exitCode: 1,
      message: "this account has no free companion slot",
    });
    const odd = new ClientError("ServerRefused", "x", { serverCode: "Weird" });
    expect(describeFailure(odd).message).toBe("the server refused the request");
    expect(describeFailure(new ClientError("Timeout", "x")).message).toBe(
      "timed out waiting for the server",
    );
    expect(describeFailure(new ClientError("InvalidArgument", "no such companion")).message).toBe(
      "no such companion",
    );
    expect(describeFailure(new CoreError("DecryptionFailed", "x")).message).toBe(
      "a protocol check failed (DecryptionFailed)",
    );
    const unexpected = describeFailure(new TypeError("at /secret/path line 3"));
    expect(unexpected).toEqual({ exitCode: 1, message: "unexpected error (TypeError)" });
  });
});

describe("explainRefusals", () => {
  it("rewords the named server refusals and passes everything else through", async () => {
    const conflict = new ClientError("ServerRefused", "x", { serverCode: "Conflict" });
    await expect(
      explainRefusals(Promise.reject(conflict), { Conflict: "the name is taken" }),
    ).rejects.toThrow(new CliError("Failed", "the name is taken"));
    const timeout = new ClientError("Timeout", "x");
    await expect(explainRefusals(Promise.reject(timeout), { Conflict: "n" })).rejects.toBe(timeout);
    await expect(explainRefusals(Promise.resolve(7), {})).resolves.toBe(7);
  });
});
