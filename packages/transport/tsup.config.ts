import { createTsupConfig } from "../../tsup.config.base.ts";

// One entry per public module: the contract and Noise at the root, one subpath per provider.
export default createTsupConfig({
  index: "src/index.ts",
  websocket: "src/websocket.ts",
  memory: "src/memory.ts",
});
