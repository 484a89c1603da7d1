/**
 * The session as the session layer hands it out: the stored record with its
 * metadata opened (decrypted, see src/crypto/field-cipher.ts) and decoded.
 * Stores keep metadata as opaque text; everything above the session layer
 * works with JSON objects.
 *
 * This is the ONE place a stored record becomes a session for callers (RPC
 * replies, listings, watch events and snapshots): the cipher is a required
 * argument so that no path can forget to decrypt. SessionManager.view() calls
 * it with the manager's cipher.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { METADATA_FIELD, type FieldCipher } from "../crypto/field-cipher.js";
import { decodeMetadata } from "./json-codec.js";
import type { SessionRecord } from "../domain/model.js";

export interface SessionView extends Omit<SessionRecord, "metadata"> {
  readonly metadata: JsonObject;
}

export function toSessionView(record: SessionRecord, cipher: FieldCipher, known?: { readonly sealed: string; readonly text: string }): SessionView {
  // A record holding exactly what this process just sealed: its plaintext is at hand, no need to open it again.
  const text =
    known !== undefined && known.sealed === record.metadata
      ? known.text
      : cipher.open(record.metadata, { tenant: record.tenant, sessionId: record.sessionId, field: METADATA_FIELD });
  return { ...record, metadata: decodeMetadata(text) };
}
