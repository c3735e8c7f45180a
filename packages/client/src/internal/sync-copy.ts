import { create } from "@bufbuild/protobuf";
import type { ContentInit } from "@pairwise/core";
import { ContentSchema, SyncCopySchema, type Content } from "@pairwise/core/proto";

/** The same content marked as a copy of a message sent to `to` (for this account's other devices). */
export function syncCopyOf(content: ContentInit, to: string): Content {
  const copy = create(ContentSchema, content);
  copy.sync = create(SyncCopySchema, { originalRecipient: to });
  return copy;
}
