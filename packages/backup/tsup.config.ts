import { createTsupConfig } from "../../tsup.config.base.ts";

// One entry per provider or unlock file: a new one becomes a new subpath build.
export default createTsupConfig([
  "src/index.ts",
  "src/destinations.ts",
  "src/providers/*.ts",
  "src/unlock/*.ts",
  "!src/**/*.test.ts",
]);
