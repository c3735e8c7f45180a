import { createVitestConfig } from "../../vitest.config.base.ts";

export default createVitestConfig({ testTimeout: 60_000 });
