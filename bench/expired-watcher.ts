/**
 * The remote watcher of the expiry-lag benches (watch-bench, cluster-bench,
 * expiry-cost): a WatchSessions stream of the "probe" user's EXPIRED events,
 * each handed over with its arrival time, its session's expire time and the
 * time its event was written to the log (the cursor's millisecond part).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { EventType, type SessionClient } from "@sessiond/client";

export interface ExpiredWatcher {
  /** Ends the stream and waits for it to close. */
  stop(): Promise<void>;
}

/** Starts the watch and resolves once it is live (its first heartbeat) or after 10 s. */
export async function watchExpired(client: SessionClient, onExpired: (arrivedAt: number, expireAt: number, loggedAt: number) => void): Promise<ExpiredWatcher> {
  const abort = new AbortController();
  let ready = (): void => {};
  const watching = new Promise<void>((resolve) => (ready = resolve));
  const watch = (async () => {
    for await (const r of client.watchSessions({ userId: "probe", eventTypes: [EventType.EXPIRED], sendInitialSnapshot: true }, { signal: abort.signal, timeoutMs: 0 })) {
      const e = r.event;
      if (e?.type === EventType.HEARTBEAT) ready();
      if (e === undefined || e.type !== EventType.EXPIRED) continue;
      onExpired(Date.now(), timestampMs(e.session?.expireTime as Timestamp), Number(e.cursor.split("-")[0]));
    }
  })().catch(() => undefined);
  await Promise.race([watching, sleep(10_000)]);
  return {
    stop: async () => {
      abort.abort();
      await watch;
    },
  };
}
