import { cp, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkPackages, publishableWorkspaces } from "./pack-check.ts";

describe("pack-and-import check", () => {
  it("every publishable package packs, installs outside the workspace and imports with types", async () => {
    const packages = await publishableWorkspaces();
    expect(packages.map((p) => p.name)).toContain("@pairwise/core");
    const result = await checkPackages(packages);
    expect(result.problems).toEqual([]);
    expect(result.checkedEntryPoints).toContain("@pairwise/core");
  });

  it("fails a package whose exports point at types that are not shipped", async () => {
    // A copy of core's built output without its .d.ts files, whose exports map still names
    // them: the break a forgotten `dts: true` or a renamed entry causes.
    const [core] = (await publishableWorkspaces()).filter((p) => p.name === "@pairwise/core");
    const dir = await mkdtemp(join(tmpdir(), "pairwise-broken-"));
    await cp(join(core!.dir, "dist"), join(dir, "dist"), {
      recursive: true,
      filter: (source) => !source.endsWith(".d.ts"),
    });
    await writeFile(
      join(dir, "package.json"),
      JSON.stringify({
        name: "@pairwise/broken-fixture",
        version: "0.0.0",
        type: "module",
        exports: { ".": { types: "./dist/index.d.ts", import: "./dist/index.js" } },
        files: ["dist"],
      }),
    );
    const result = await checkPackages([
      { dir, name: "@pairwise/broken-fixture", entryPoints: ["@pairwise/broken-fixture"] },
    ]);
    expect(
      result.problems.some((p) => p.startsWith("@pairwise/broken-fixture: publint")),
      result.problems.join("\n"),
    ).toBe(true);
    expect(result.problems.some((p) => p.startsWith("types do not resolve"))).toBe(true);
  });
});
