/**
 * What a WatchSessions stream tells a client besides its events; shared by the
 * server (src/api/session-service.ts) and, under the same name, the client package
 * (packages/client/src/watch-protocol.ts); test/client-grpc-js.test.ts holds them equal.
 */

/**
 * Response trailer (error metadata) of a watch that ended early: the cursor of
 * the last event or heartbeat delivered, to resume from with resume_cursor.
 * Sent with RESOURCE_EXHAUSTED (the watcher fell behind) and UNAVAILABLE
 * (the server shut down, or the store went away).
 */
export const WATCH_CURSOR_METADATA = "watch-cursor";
