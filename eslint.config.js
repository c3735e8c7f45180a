// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import importX from "eslint-plugin-import-x";
import globals from "globals";

/** Deep imports into another package's implementation are never allowed. */
const internalPatterns = [
  {
    group: ["@pairwise/*/src/*", "@pairwise/*/src", "@pairwise/*/dist/*"],
    message: "Import a package through its exports map, not its files.",
  },
  {
    group: ["**/../../packages/*/src/**", "**/../../apps/*/src/**"],
    message: "Import a sibling package by name, not by path.",
  },
];
const libsignalOnlyInCore = {
  name: "@signalapp/libsignal-client",
  message: "Only packages/core imports libsignal; use @pairwise/core's interfaces.",
};

export default tseslint.config(
  {
    ignores: [
      "**/dist/**",
      "**/dist-base/**",
      "**/node_modules/**",
      "**/.turbo/**",
      "**/coverage/**",
      "**/gen/**",
      "**/fixtures/**",
      // Temporary files build tools write next to their config while they load it (tsup's
      // bundled config, Vite's timestamped one). Turbo runs one package's lint while another
      // task builds it: linted, such a file can vanish between listing and reading, and ESLint
      // then crashes (exit 2).
      "**/*.bundled_*.mjs",
      "**/*.timestamp-*.mjs",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      globals: { ...globals.node },
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { "import-x": importX },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/restrict-template-expressions": [
        "error",
        { allowNumber: true, allowBoolean: true },
      ],
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_" },
      ],
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-confusing-void-expression": ["error", { ignoreArrowShorthand: true }],
      "import-x/no-cycle": ["error", { ignoreExternal: true }],
      "import-x/no-self-import": "error",
      "no-console": "error",
      "no-restricted-imports": [
        "error",
        { paths: [libsignalOnlyInCore], patterns: internalPatterns },
      ],
    },
    settings: {
      "import-x/resolver": { node: { extensions: [".ts", ".js"] } },
      "import-x/extensions": [".ts", ".js"],
    },
  },
  {
    files: ["packages/core/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: internalPatterns }] },
  },
  {
    // Benchmarks measure raw libsignal as the floor, so they may import it directly.
    files: ["bench/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: internalPatterns }] },
  },
  {
    files: ["**/*.test.ts", "**/test/**/*.ts", "bench/**/*.ts", "scripts/**", "tooling/**"],
    rules: {
      "no-console": "off",
      "@typescript-eslint/no-non-null-assertion": "off",
    },
  },
  {
    files: ["**/*.js", "**/*.mjs"],
    extends: [tseslint.configs.disableTypeChecked],
  },
);
