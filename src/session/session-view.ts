/**
 * The session as the session layer hands it out: the stored record with its
 * metadata decoded. Stores keep metadata as opaque JSON text; everything above
 * the session layer works with JSON objects.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { decodeMetadata } from "./json-codec.js";
import type { SessionRecord } from "./model.js";

export interface SessionView extends Omit<SessionRecord, "metadata"> {
  readonly metadata: JsonObject;
}

export function toSessionView(record: SessionRecord): SessionView {
  return { ...record, metadata: decodeMetadata(record.metadata) };
}
