import { execFile } from "node:child_process";
import { mkdtemp, readFile, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { publint } from "publint";
import { formatMessage } from "publint/utils";

const run = promisify(execFile);
const repoRoot = resolve(import.meta.dirname, "../../..");
const bin = (name: string) => join(repoRoot, "node_modules", ".bin", name);
const nodeTypesVersion = (
  JSON.parse(await readFile(join(repoRoot, "node_modules/@types/node/package.json"), "utf8")) as {
    version: string;
  }
).version;

interface PackageJson {
  name: string;
  version: string;
  private?: boolean;
  exports?: Record<string, unknown>;
  peerDependencies?: Record<string, string>;
}

/** A package found in the workspace, with the subpaths its `exports` map offers to code. */
export interface WorkspacePackage {
  dir: string;
  name: string;
  entryPoints: string[];
}

/** What the check found wrong, one line per problem, naming the package. */
export interface PackCheckResult {
  problems: string[];
  checkedEntryPoints: string[];
}

async function readPackageJson(dir: string): Promise<PackageJson> {
  return JSON.parse(await readFile(join(dir, "package.json"), "utf8")) as PackageJson;
}

/** Code entry points of a package: every `exports` key but `./package.json`, as import specifiers. */
export function entryPointsOf(pkg: PackageJson): string[] {
  return Object.keys(pkg.exports ?? {})
    .filter((key) => key !== "./package.json" && !key.includes("*"))
    .map((key) => (key === "." ? pkg.name : `${pkg.name}/${key.slice(2)}`));
}

/** Every workspace package that is published to npm (not `private`). */
export async function publishableWorkspaces(root = repoRoot): Promise<WorkspacePackage[]> {
  const found: WorkspacePackage[] = [];
  for (const group of ["packages", "apps"]) {
    for (const entry of await readdir(join(root, group), { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const dir = join(root, group, entry.name);
      const pkg = await readPackageJson(dir);
      if (pkg.private) continue;
      found.push({ dir, name: pkg.name, entryPoints: entryPointsOf(pkg) });
    }
  }
  return found;
}

async function npmPack(dir: string, destination: string): Promise<string> {
  const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", destination], {
    cwd: dir,
    maxBuffer: 64 * 1024 * 1024,
  });
  const [info] = JSON.parse(stdout) as { filename: string }[];
  if (!info) throw new Error(`npm pack printed no tarball for ${dir}`);
  return join(destination, info.filename);
}

function failureText(err: unknown): string {
  const e = err as { stdout?: string; stderr?: string; message?: string };
  return [e.stdout, e.stderr].filter(Boolean).join("\n").trim() || String(e.message);
}

/**
 * Packs the given workspace packages, installs the tarballs into a fresh project under the OS
 * temp dir (outside the workspace, so nothing resolves through workspace links), and checks:
 * publint and attw per package, a run-time ESM import of every entry point, and a `tsc --noEmit`
 * over a file importing every entry point with NodeNext resolution.
 */
export async function checkPackages(packages: WorkspacePackage[]): Promise<PackCheckResult> {
  const problems: string[] = [];
  const work = await mkdtemp(join(tmpdir(), "pairwise-pack-check-"));
  const tarballs = new Map<string, string>();

  for (const pkg of packages) {
    const tarball = await npmPack(pkg.dir, work);
    tarballs.set(pkg.name, tarball);
    const pkgJson = await readPackageJson(pkg.dir);
    const lint = await publint({ pkgDir: pkg.dir, pack: "npm", level: "warning", strict: true });
    for (const message of lint.messages) {
      problems.push(
        `${pkg.name}: publint: ${formatMessage(message, pkgJson as never) ?? message.code}`,
      );
    }
    if (pkg.entryPoints.length > 0) {
      try {
        await run(bin("attw"), [tarball, "--profile", "esm-only", "--format", "ascii"], {
          cwd: work,
        });
      } catch (err) {
        problems.push(`${pkg.name}: attw: ${failureText(err)}`);
      }
    }
  }

  // Optional peers (a provider's SDK, e.g. `ws` for `./websocket`) are what a consumer installs
  // next to the package; install the versions the workspace uses.
  const peers: Record<string, string> = {};
  for (const pkg of packages) {
    for (const name of Object.keys((await readPackageJson(pkg.dir)).peerDependencies ?? {})) {
      if (name.startsWith("@pairwise/") || tarballs.has(name)) continue;
      peers[name] = (await readPackageJson(join(repoRoot, "node_modules", name))).version;
    }
  }
  const project = join(work, "consumer");
  await run("mkdir", ["-p", project]);
  await writeFile(
    join(project, "package.json"),
    JSON.stringify({
      name: "pairwise-pack-consumer",
      private: true,
      type: "module",
      dependencies: {
        ...peers,
        ...Object.fromEntries([...tarballs].map(([name, file]) => [name, `file:${file}`])),
      },
      devDependencies: { "@types/node": nodeTypesVersion },
    }),
  );
  try {
    // Scripts are skipped: the check is about what the package exports, and native addons
    // (better-sqlite3) load lazily, so importing an entry point does not need them built.
    await run(
      "npm",
      [
        "install",
        "--ignore-scripts",
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
      ],
      {
        cwd: project,
        maxBuffer: 64 * 1024 * 1024,
      },
    );
  } catch (err) {
    problems.push(`npm install of the packed tarballs failed: ${failureText(err)}`);
    return { problems, checkedEntryPoints: [] };
  }

  const specifiers = packages.flatMap((p) => p.entryPoints);
  const imports = specifiers.map((s, i) => `import * as m${i} from ${JSON.stringify(s)};`);
  const uses = `export const loaded: number = [${specifiers.map((_, i) => `Object.keys(m${i}).length`).join(", ")}].length;`;
  await writeFile(join(project, "check.mts"), `${imports.join("\n")}\n${uses}\n`);
  await writeFile(
    join(project, "run.mjs"),
    `${imports.join("\n")}\nconsole.log(${specifiers.length});\n`,
  );
  await writeFile(
    join(project, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        module: "NodeNext",
        moduleResolution: "NodeNext",
        target: "ES2022",
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: ["node"],
      },
      files: ["check.mts"],
    }),
  );
  try {
    await run(process.execPath, ["run.mjs"], { cwd: project });
  } catch (err) {
    problems.push(`run-time import failed: ${failureText(err)}`);
  }
  try {
    await run(bin("tsc"), ["-p", "tsconfig.json"], { cwd: project });
  } catch (err) {
    problems.push(`types do not resolve: ${failureText(err)}`);
  }
  return { problems, checkedEntryPoints: specifiers };
}
