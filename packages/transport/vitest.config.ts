import { createVitestConfig } from "../../vitest.config.base.ts";

export default createVitestConfig();
