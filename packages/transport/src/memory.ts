// @pairwise/transport/memory: in-process transport pairs for tests and single-process setups.
export { createMemoryPair, type MemoryPairOptions } from "./internal/memory-pair.ts";
