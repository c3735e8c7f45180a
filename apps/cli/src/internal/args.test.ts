import { describe, expect, it } from "vitest";
import { parseCommandLine, parseSeconds } from "./args.ts";
import { COMMANDS } from "./command-table.ts";
import { CliError } from "./errors.ts";

const parse = (...argv: string[]) => parseCommandLine(argv, COMMANDS);

function usage(argv: string[]): string {
  try {
    parse(...argv);
  } catch (err) {
    expect(CliError.is(err, "Usage")).toBe(true);
    return (err as Error).message;
  }
  throw new Error("parsed without a usage error");
}

describe("parseCommandLine", () => {
  it("takes global options before or after the command", () => {
    for (const argv of [
      ["--home", "/h", "--json", "--timeout", "2.5", "send", "bob", "hi"],
      ["send", "bob", "--home", "/h", "hi", "--timeout", "2.5", "--json"],
    ]) {
      const p = parse(...argv);
      expect(p.kind).toBe("run");
      if (p.kind !== "run") return;
      expect(p.command.name).toBe("send");
      expect(p.globals).toEqual({ home: "/h", json: true, timeoutMs: 2500 });
      expect(p.args.positionals).toEqual(["bob", "hi"]);
    }
  });

  it("keeps only the command's own options and lets text after -- start with a dash", () => {
    const p = parse("send", "bob", "--", "--not-an-option");
    expect(p.kind === "run" && p.args.positionals).toEqual(["bob", "--not-an-option"]);
    const r = parse("receive", "--wait", "3");
    expect(r.kind === "run" && r.args.values).toEqual({ wait: "3" });
  });

  it("answers --help, -h and help for the program and each command", () => {
    expect(parse("--help")).toEqual({ kind: "help" });
    expect(parse("help")).toEqual({ kind: "help" });
    for (const argv of [
      ["send", "--help"],
      ["send", "-h"],
      ["help", "send"],
    ]) {
      const p = parse(...argv);
      expect(p.kind === "help" && p.command?.name).toBe("send");
    }
  });

  it("refuses bad command lines with one-line usage errors", () => {
    expect(usage([])).toBe("missing command");
    expect(usage(["bogus"])).toBe("unknown command 'bogus'");
    expect(usage(["help", "bogus"])).toBe("unknown command 'bogus'");
    expect(usage(["send", "bob"])).toBe("send: missing TEXT");
    expect(usage(["history"])).toBe("history: missing NAME");
    expect(usage(["devices", "extra"])).toBe("devices: unexpected argument 'extra'");
    expect(usage(["send", "--wait", "1", "bob", "hi"])).toMatch(/^Unknown option '--wait'$/);
    expect(usage(["--frobnicate", "devices"])).toMatch(/^Unknown option '--frobnicate'$/);
    expect(usage(["--home"])).toMatch(/--home/);
    expect(usage(["--home", "", "devices"])).toBe("--home must not be empty");
    for (const t of ["0", "-1", "abc", "1e3", "100000"])
      expect(usage([`--timeout=${t}`, "devices"])).toMatch(/^--timeout must be a number/);
    expect(usage(["--timeout", "-1", "devices"])).toBe("Option '--timeout' argument is ambiguous");
  });
});

describe("parseSeconds", () => {
  it("accepts plain decimal seconds in range", () => {
    expect(parseSeconds("0", "--wait", 0)).toBe(0);
    expect(parseSeconds("1.5", "--wait", 0)).toBe(1.5);
    expect(() => parseSeconds("0", "--timeout", 0.001)).toThrow(/above 0/);
    expect(() => parseSeconds(" 1", "--wait", 0)).toThrow(CliError);
  });
});
