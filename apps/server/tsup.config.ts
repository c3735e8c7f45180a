import { createTsupConfig } from "../../tsup.config.base.ts";

export default createTsupConfig({ index: "src/index.ts", cli: "src/cli.ts" });
