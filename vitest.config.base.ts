import { defineConfig } from "vitest/config";

/**
 * Shared Vitest settings: tests live beside the code (`src/**\/*.test.ts`), and each run also
 * writes `.vitest-result.json` so the root `npm test` can print one closing summary line.
 */
export function createVitestConfig(options: { testTimeout?: number; include?: string[] } = {}) {
  return defineConfig({
    test: {
      include: options.include ?? ["src/**/*.test.ts", "test/**/*.test.ts"],
      testTimeout: options.testTimeout ?? 20_000,
      hookTimeout: 60_000,
      passWithNoTests: true,
      reporters: ["default", ["json", { outputFile: ".vitest-result.json" }]],
      pool: "forks",
    },
  });
}
