import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = resolve(import.meta.dirname, "../../..");
const changesetBin = join(root, "node_modules/@changesets/cli/bin.js");

/** Copies the workspace's package manifests and changeset config into a scratch repo. */
async function scratchWorkspace(): Promise<{ dir: string; workspaces: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), "pairwise-versioning-"));
  await cp(join(root, "package.json"), join(dir, "package.json"));
  await mkdir(join(dir, ".changeset"));
  await cp(join(root, ".changeset/config.json"), join(dir, ".changeset/config.json"));
  const workspaces: string[] = [];
  for (const group of ["packages", "apps", "tooling", "tests"]) {
    for (const name of await readdir(join(root, group))) {
      const rel = `${group}/${name}`;
      await mkdir(join(dir, rel), { recursive: true });
      await cp(join(root, rel, "package.json"), join(dir, rel, "package.json"));
      workspaces.push(rel);
    }
  }
  await run("git", ["init", "-q", "-b", "main"], { cwd: dir });
  return { dir, workspaces };
}

async function versions(dir: string, workspaces: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const rel of workspaces) {
    const pkg = JSON.parse(await readFile(join(dir, rel, "package.json"), "utf8")) as {
      name: string;
      version: string;
    };
    out.set(pkg.name, pkg.version);
  }
  return out;
}

describe("changesets release flow", () => {
  it("version-packages bumps the named package and exactly the packages that depend on it", async () => {
    const { dir, workspaces } = await scratchWorkspace();
    const before = await versions(dir, workspaces);
    await writeFile(
      join(dir, ".changeset/sample.md"),
      '---\n"@pairwise/transport": patch\n---\n\nA sample change.\n',
    );
    await run(process.execPath, [changesetBin, "version"], { cwd: dir });
    const after = await versions(dir, workspaces);
    const bumped = [...after].filter(([name, v]) => before.get(name) !== v).map(([n]) => n);
    // transport, its direct dependents (client, server) and theirs (interop-adapters, cli, bot-host).
    expect(bumped.sort()).toEqual(
      [
        "@pairwise/bot-host",
        "@pairwise/cli",
        "@pairwise/client",
        "@pairwise/interop-adapters",
        "@pairwise/server",
        "@pairwise/transport",
      ].sort(),
    );
    const client = JSON.parse(
      await readFile(join(dir, "packages/client/package.json"), "utf8"),
    ) as {
      dependencies: Record<string, string>;
    };
    expect(client.dependencies["@pairwise/transport"]).toBe(`^${after.get("@pairwise/transport")}`);
  });
});
