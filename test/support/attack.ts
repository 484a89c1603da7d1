/**
 * Hostile clients for the attack suite (test/attack.test.ts) and the flood
 * benchmark: idle HTTP/2 connections, floods of streams, raw bytes. Loopback
 * only, bounded in count by the caller.
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import { readFileSync } from "node:fs";
import { once } from "node:events";

/** The HTTP/2 connection preface followed by an empty SETTINGS frame: what an idle client sends. */
export const PREFACE_AND_SETTINGS = Buffer.concat([
  Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"),
  Buffer.from([0, 0, 0, 0x04, 0, 0, 0, 0, 0]),
]);

/** Resident set size of a process, bytes (Linux /proc). */
export function rssOf(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"));
  return Number(/(\d+)/.exec(line ?? "")?.[1] ?? 0) * 1024;
}

/** A value of a metric from GET /metrics (first sample whose line starts with `series`). */
export async function metricValue(url: string, series: string, headers: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { headers })).text();
  const line = text.split("\n").find((l) => l.startsWith(series + " ") || (series.includes("{") && l.startsWith(series)));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

export interface IdleFlood {
  /** Sockets that connected. */
  readonly connected: () => number;
  /** Sockets the server has closed (or that failed to connect). */
  readonly closed: () => number;
  destroy(): void;
}

/**
 * Opens `count` connections from `localAddress` (any 127.x.y.z on Linux), each
 * sending the preface and an empty SETTINGS frame and nothing more.
 */
export async function idleFlood(url: string, count: number, localAddress = "127.0.0.1"): Promise<IdleFlood> {
  const { hostname, port } = new URL(url);
  const sockets: net.Socket[] = [];
  let connected = 0;
  let closed = 0;
  const opening: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const socket = net.connect({ host: hostname, port: Number(port), localAddress });
    sockets.push(socket);
    socket.on("error", () => {});
    socket.on("data", () => {});
    socket.once("close", () => (closed += 1));
    opening.push(
      new Promise<void>((resolve) => {
        socket.once("connect", () => {
          connected += 1;
          socket.write(PREFACE_AND_SETTINGS);
          resolve();
        });
        socket.once("close", () => resolve());
      }),
    );
    // Let the accept queue drain now and then, as a real flood would over the network.
    if (i % 500 === 499) await new Promise((resolve) => setImmediate(resolve));
  }
  await Promise.all(opening);
  return {
    connected: () => connected,
    closed: () => closed,
    destroy: () => {
      for (const socket of sockets) socket.destroy();
    },
  };
}

export interface StreamFloodOptions {
  readonly path: string;
  /** The request body (one gRPC-framed message); the stream is left open after it unless `end`. */
  readonly body: Uint8Array;
  readonly connections: number;
  readonly perConnection: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly end?: boolean;
}

export interface StreamFlood {
  /** Streams answered with an open response (headers without grpc-status). */
  readonly open: () => number;
  /** Streams ended with a status, by grpc-status (or "reset" for RST_STREAM / errors). */
  readonly statuses: () => Map<string, number>;
  /** Resolves once every stream has an outcome (open or a status), or after timeoutMs. */
  settled(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** Opens connections × perConnection gRPC streams on `path`. */
export async function streamFlood(url: string, options: StreamFloodOptions): Promise<StreamFlood> {
  const sessions: http2.ClientHttp2Session[] = [];
  let open = 0;
  let decided = 0;
  const statuses = new Map<string, number>();
  const total = options.connections * options.perConnection;
  const count = (key: string): void => {
    statuses.set(key, (statuses.get(key) ?? 0) + 1);
  };
  for (let c = 0; c < options.connections; c++) {
    const session = http2.connect(url, { settings: { initialWindowSize: 65535 } });
    session.on("error", () => {});
    sessions.push(session);
    await once(session, "connect");
    for (let s = 0; s < options.perConnection; s++) {
      let outcome = false;
      const decide = (fn: () => void): void => {
        if (outcome) return;
        outcome = true;
        decided += 1;
        fn();
      };
      const stream = session.request({
        ":method": "POST",
        ":path": options.path,
        "content-type": "application/grpc",
        te: "trailers",
        ...options.headers,
      });
      stream.on("error", () => decide(() => count("reset")));
      stream.on("response", (headers) => {
        const status = headers["grpc-status"];
        if (status !== undefined) decide(() => count(String(status)));
        else decide(() => (open += 1));
      });
      stream.on("data", () => {});
      stream.on("trailers", (trailers) => {
        const status = trailers["grpc-status"];
        if (status !== undefined) decide(() => count(String(status)));
      });
      stream.on("close", () => decide(() => count("reset")));
      stream.write(options.body);
      if (options.end === true) stream.end();
    }
  }
  return {
    open: () => open,
    statuses: () => statuses,
    async settled(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (decided < total && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      return decided >= total;
    },
    async close() {
      await Promise.all(
        sessions.map(
          (session) =>
            new Promise<void>((resolve) => {
              session.once("close", () => resolve());
              session.destroy();
            }),
        ),
      );
    },
  };
}

/** A gRPC length-prefixed message frame. */
export function grpcFrame(message: Uint8Array): Uint8Array {
  const frame = Buffer.alloc(5 + message.byteLength);
  frame.writeUInt32BE(message.byteLength, 1);
  frame.set(message, 5);
  return frame;
}

/** Sends one unary gRPC request with raw message bytes; resolves with grpc-status and grpc-message. */
export async function rawGrpcCall(
  url: string,
  path: string,
  message: Uint8Array,
  headers: Readonly<Record<string, string>> = {},
  options: { readonly endStream?: boolean; /** Sent instead of the message's own frame header. */ readonly prefix?: Uint8Array } = {},
): Promise<{ status: string; message: string }> {
  const session = http2.connect(url);
  session.on("error", () => {});
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
      let result: { status: string; message: string } | undefined;
      const take = (h: http2.IncomingHttpHeaders): void => {
        if (h["grpc-status"] !== undefined) result = { status: String(h["grpc-status"]), message: decodeURIComponent(String(h["grpc-message"] ?? "")) };
      };
      stream.on("response", take);
      stream.on("trailers", take);
      stream.on("data", () => {});
      stream.on("error", reject);
      stream.on("close", () => (result === undefined ? reject(new Error(`no grpc-status (rst ${stream.rstCode})`)) : resolve(result)));
      stream.write(options.prefix === undefined ? grpcFrame(message) : Buffer.concat([options.prefix, message]));
      if (options.endStream !== false) stream.end();
    });
  } finally {
    session.destroy();
  }
}

export interface TrickledBody {
  /** The RST_STREAM code the server ended the stream with (undefined: it did not reset it in time). */
  readonly rstCode: number | undefined;
  /** Body bytes written before the stream ended. */
  readonly sent: number;
  readonly elapsedMs: number;
}

/**
 * Opens one HTTP/2 stream, sends its headers and `first`, then the rest of its
 * body one byte (a space) every `intervalMs`, until the server ends the stream
 * or `maxMs` passes.
 */
export async function trickleHttp2Body(
  url: string,
  options: { readonly path: string; readonly headers: Readonly<Record<string, string>>; readonly intervalMs: number; readonly maxMs: number; readonly first: Uint8Array },
): Promise<TrickledBody> {
  const session = http2.connect(url);
  session.on("error", () => {});
  const startedAt = Date.now();
  try {
    const stream = session.request({ ":method": "POST", ":path": options.path, ...options.headers });
    stream.on("error", () => {});
    stream.on("data", () => {});
    const closed = new Promise<void>((resolve) => stream.once("close", resolve));
    let ended = false;
    void closed.then(() => (ended = true));
    stream.write(options.first);
    let sent = options.first.byteLength;
    while (!ended && Date.now() - startedAt < options.maxMs) {
      stream.write(Buffer.from([0x20]));
      sent += 1;
      await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, options.intervalMs))]);
    }
    return { rstCode: ended ? stream.rstCode : undefined, sent, elapsedMs: Date.now() - startedAt };
  } finally {
    session.destroy();
  }
}
