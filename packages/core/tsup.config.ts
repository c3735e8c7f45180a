import { createTsupConfig } from "../../tsup.config.base.ts";

// `.` is the API; `./blob` the blob format alone (no libsignal: what backups and media tools
// need without loading the native library); `./proto` is the generated protobuf-es schema (message types and schemas for
// Content, ADV structures, provisioning and history sync); `./relay-proto` the device-server
// protocol, and `./relay-wire` its hand-written codecs for the per-message frames.
export default createTsupConfig({
  index: "src/index.ts",
  blob: "src/blob.ts",
  proto: "src/gen/pairwise_pb.ts",
  "relay-proto": "src/gen/relay_pb.ts",
  "relay-wire": "src/relay-wire.ts",
});
