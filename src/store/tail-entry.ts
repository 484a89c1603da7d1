/** A TailEntry over an event already decoded whole: for stores and entry forms that decode as they read. */
import type { StoredEvent, TailEntry } from "./store.js";

export function decodedEntry(event: StoredEvent): TailEntry {
  return {
    id: event.id,
    type: event.type,
    tenant: event.session.tenant,
    sessionId: event.session.sessionId,
    expireTime: event.session.expireTime,
    event: () => event,
  };
}
