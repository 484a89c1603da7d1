/**
 * Many watches starting at once on one process (every client reconnecting
 * after a deploy): their snapshot listings wait their turn at the process's
 * read gate (WATCH_START_CONCURRENCY) instead of reaching Redis together and
 * passing the command timeout behind each other; /metrics shows how many
 * wait (sessiond_watch_start_reads_waiting). Without the gate, this same
 * herd loses most of its watches to UNAVAILABLE (checked by hand with
 * WATCH_START_CONCURRENCY=10000: 1374 of 2400 failed, 1600 of them not cancelled).
 *
 * It runs next to CPU burners (one per core but one, for the length of the herd), so
 * the process is slow as on a loaded CI machine: the watches start late, none
 * fails, because a Redis call's deadline does not count time this process was
 * busy or waiting for a CPU (src/observability/loop-aware-deadline.ts,
 * loop-idle.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as http from "node:http";
import { availableParallelism } from "node:os";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { App } from "../src/app.js";
import { createSessionClient, createWatchReader, EventType, type WatchReader } from "@sessiond/client";
import { useRedisServer } from "./support/redis-server.js";
import { startTestApp, waitForWatchers } from "./support/server.js";

const WATCHES = 2400;
const SESSIONS = 20;
/** One CPU burner per core but one: the herd shares the rest with it (and with whatever else the machine runs). */
const BURNERS = Math.max(1, availableParallelism() - 1);
/**
 * The herd's CPU time spreads over whatever share of a CPU the machine gives this process: on a 2-core machine at a
 * load average of 24 it took 10 minutes. The bound catches a hang, not slowness.
 */
const HERD_BOUND_MS = 30 * 60_000;

describe("watches starting at once (RedisStore)", () => {
  const redis = useRedisServer();
  let app: App;
  let readers: WatchReader[];
  before(async () => {
    app = await startTestApp({
      redisUrl: redis.url,
      env: {
        // Half the default. The burners and the machine's other load starve redis-server too (a process of its own):
        // that is Redis being slow, which the deadline rightly counts; this process's own wait for a CPU is not.
        REDIS_COMMAND_TIMEOUT: "1s",
        MAX_WATCHERS_PER_PRINCIPAL: "5000",
        MAX_SESSIONS_PER_USER: "0",
        WATCH_HEARTBEAT: "1h",
        // 600 watches on each of the 4 readers' connections.
        HTTP2_MAX_CONCURRENT_STREAMS: "1000",
        MAX_STREAMS_PER_CONNECTION: "1000",
      },
    });
    const writer = createSessionClient(app.url);
    for (let i = 0; i < SESSIONS; i++) await writer.createSession({ userId: "herd", dataSource: "d" });
    readers = Array.from({ length: 4 }, () => createWatchReader(app.url));
  });
  after(async () => {
    for (const reader of readers) reader.close();
    await app.close();
  });

  it(`${WATCHES} snapshot watches, a third of them cancelled while waiting: every other one gets its whole snapshot`, { timeout: HERD_BOUND_MS }, async () => {
    const burners = startCpuBurners(BURNERS, 180_000);
    // The gauge of reads waiting at the gate, scraped while the herd starts.
    let peakWaiting = 0;
    let herdDone = false;
    const scraping = (async () => {
      while (!herdDone) {
        // A scrape that fails (its connection reset while the loaded process lagged) is skipped: the watches are what is tested.
        peakWaiting = Math.max(peakWaiting, await waitingReads(app.url).catch(() => 0));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const outcomes = await Promise.all(
      Array.from({ length: WATCHES }, async (_, i) => {
        const abort = new AbortController();
        if (i % 3 === 2) setTimeout(() => abort.abort(), 20);
        const reader = readers[i % readers.length] as WatchReader;
        let snapshot = 0;
        try {
          for await (const { event } of reader.watchSessions({ userId: "herd", sendInitialSnapshot: true }, { signal: abort.signal })) {
            if (event?.type === EventType.SNAPSHOT) snapshot += 1;
            if (event?.type === EventType.HEARTBEAT) return { snapshot };
          }
          return { error: "the stream ended" };
        } catch (error) {
          return abort.signal.aborted ? { cancelled: true } : { error: String(error) };
        } finally {
          abort.abort();
        }
      }),
    );
    herdDone = true;
    for (const burner of burners) burner.kill();
    await scraping;
    const failures = outcomes.filter((o) => "error" in o);
    assert.deepEqual(failures.slice(0, 3), [], `${failures.length} watches failed`);
    const complete = outcomes.filter((o) => "snapshot" in o);
    assert.ok(complete.length >= (WATCHES * 2) / 3, `every watch not cancelled completed (${complete.length})`);
    assert.ok(complete.every((o) => o.snapshot === SESSIONS), "each with the whole snapshot");
    // The server ends its side of the cancelled streams behind the loaded machine's backlog too.
    await waitForWatchers(app, 0, 120_000);
    assert.ok(peakWaiting > 0, "the metrics showed reads waiting at the gate");
    assert.equal(await waitingReads(app.url), 0, "and none once the herd has started");
  });
});

/** Processes that spin a CPU each, for at most `ms` (killed by the caller once the herd is over). */
function startCpuBurners(count: number, ms: number): ChildProcess[] {
  return Array.from({ length: count }, () => {
    const child = spawn(process.execPath, ["-e", `const end = Date.now() + ${ms}; while (Date.now() < end) {}`], { stdio: "ignore" });
    child.unref();
    return child;
  });
}

/**
 * sessiond_watch_start_reads_waiting from GET /metrics, on a new connection each time: with the loop this
 * busy, a kept-alive connection can meet the server's keep-alive timeout as the next scrape is sent.
 */
async function waitingReads(url: string): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get(`${url}/metrics`, { agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
  const line = text.split("\n").find((l) => l.startsWith("sessiond_watch_start_reads_waiting "));
  assert.ok(line !== undefined, "the gauge is exported");
  return Number(line.split(" ")[1]);
}
