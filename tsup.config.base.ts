import { defineConfig, type Options } from "tsup";

/**
 * The one tsup configuration every package builds with: ESM plus `.d.ts`, one entry per
 * public module. `entry` is a glob list relative to the package (e.g. `["src/index.ts",
 * "src/providers/*.ts"]`), so a new provider file becomes a new subpath build without config.
 */
export function createTsupConfig(
  entry: string[] | Record<string, string>,
  overrides: Options = {},
) {
  return defineConfig({
    entry,
    format: ["esm"],
    target: "node20",
    platform: "node",
    dts: true,
    sourcemap: true,
    clean: true,
    splitting: true,
    treeshake: true,
    outDir: "dist",
    ...overrides,
  });
}
