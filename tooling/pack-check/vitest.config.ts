import { createVitestConfig } from "../../vitest.config.base.ts";

export default createVitestConfig({ testTimeout: 300_000 });
