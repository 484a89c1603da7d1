/**
 * What a WatchSessions stream tells a client besides its events. The server
 * defines the same name (src/streaming/watch-protocol.ts in sessiond); a test
 * holds the two equal, since this package may not import the server.
 */

/**
 * Response trailer (error metadata) of a watch that ended early: the cursor of
 * the last event or heartbeat delivered, to resume from with resume_cursor.
 * Sent with RESOURCE_EXHAUSTED (the watcher fell behind) and UNAVAILABLE
 * (the server shut down, or the store went away).
 */
export const WATCH_CURSOR_METADATA = "watch-cursor";
