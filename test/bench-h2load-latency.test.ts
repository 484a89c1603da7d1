import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Http2Server } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { latencyQuantiles } from "../bench/h2load-latency.js";

test("h2load latency: p50 and p99 of the answered rows, in ms; failed streams left out", () => {
  // start µs, status, µs to the end of the response: 100 answered at 1..100 ms, and 50 failed streams that took longer.
  const rows = [
    ...Array.from({ length: 100 }, (_, i) => `17000000000000${i}\t200\t${(i + 1) * 1000}`),
    ...Array.from({ length: 50 }, (_, i) => `17000000000001${i}\t-1\t${900_000 + i}`),
  ];
  const q = latencyQuantiles(`${rows.reverse().join("\n")}\n`);
  assert.equal(q.answered, 100);
  // floor(0.5 × 100) = 50th of 0-based sorted: 51 ms; floor(0.99 × 100) = 99th: 100 ms.
  assert.equal(q.p50Ms, 51);
  assert.equal(q.p99Ms, 100);
});

test("h2load latency: an empty log has no quantiles", () => {
  const q = latencyQuantiles("");
  assert.equal(q.answered, 0);
  assert.ok(Number.isNaN(q.p50Ms) && Number.isNaN(q.p99Ms));
});

test("h2load latency: read from a real h2load run's --log-file, the server's delay shows", async () => {
  // CI installs nghttp2-client (.ci/run); the wire bench's h2load rows need it too.
  assert.equal(spawnSync("h2load", ["--version"]).status, 0, "h2load is not installed (apt-get install nghttp2-client)");
  const delayMs = 40;
  const server: Http2Server = createServer((_request, response) => {
    setTimeout(() => {
      response.writeHead(200, { "content-type": "text/plain" });
      response.end("ok");
    }, delayMs);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const dir = mkdtempSync(join(tmpdir(), "h2load-latency-"));
  try {
    const { port } = server.address() as AddressInfo;
    const logFile = join(dir, "requests.log");
    // Not spawnSync: the server answers on this process's event loop.
    const child = spawn("h2load", ["-n", "40", "-c", "1", "-m", "8", `--log-file=${logFile}`, `http://127.0.0.1:${port}/`], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    assert.equal(code, 0, out);
    const q = latencyQuantiles(readFileSync(logFile, "utf8"));
    assert.equal(q.answered, 40);
    assert.ok(q.p50Ms >= delayMs, `p50 ${q.p50Ms} ms, each response delayed ${delayMs} ms`);
    assert.ok(q.p99Ms >= q.p50Ms);
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
