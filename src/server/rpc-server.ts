/**
 * The RPC server: the Connect router behind one port (see single-port-server),
 * with the request-size limits from the configuration and one log line per RPC.
 */
import { Code, ConnectError, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import type { Config, LimitsConfig } from "../config/config.js";
import { createRpcLoggingInterceptor } from "./rpc-logging.js";
import { createSinglePortServer } from "./single-port-server.js";

export interface RpcServerOptions {
  readonly routes: (router: ConnectRouter) => void;
  readonly config: Config;
  readonly logger: Logger;
  /** Run inside the logging interceptor, so what they reject is logged too. */
  readonly interceptors?: readonly Interceptor[];
}

export interface RpcServer {
  /** Base URL clients use, e.g. "http://127.0.0.1:8080". */
  readonly url: string;
  /** The bound port (useful with PORT=0). */
  readonly port: number;
  /** Ends streams, drains in-flight requests and closes every connection. Idempotent. */
  close(): Promise<void>;
}

/** The largest unsigned 32-bit value: connect's own (and the gRPC wire format's) ceiling for one message. */
const MAX_MESSAGE_BYTES = 0xffffffff;

/**
 * The largest response the service can legitimately produce: a full data
 * listing with values, or a full page of sessions with maximal metadata, with
 * room for encoding overhead (JSON escaping can double a string). Connect's
 * default is 4 GiB, which would let a bug stream gigabytes to a client.
 */
export function maxResponseBytes(limits: LimitsConfig): number {
  const PER_ENTRY_OVERHEAD = 1024;
  const dataListing = limits.maxDataKeys * (limits.maxDataKeyLength * 4 + limits.maxDataValueBytes * 2 + PER_ENTRY_OVERHEAD);
  const sessionPage = limits.maxPageSize * (limits.maxMetadataBytes * 2 + PER_ENTRY_OVERHEAD);
  return Math.min(MAX_MESSAGE_BYTES, Math.max(dataListing, sessionPage, limits.maxRequestBytes));
}

export async function startRpcServer(options: RpcServerOptions): Promise<RpcServer> {
  const { config, logger } = options;
  // Aborting this aborts every handler's context signal, which ends WatchSessions streams;
  // unary handlers do not watch it and finish normally while the server drains.
  const shutdown = new AbortController();
  const handler = connectNodeAdapter({
    routes: options.routes,
    interceptors: [createRpcLoggingInterceptor(logger, { shutdownSignal: shutdown.signal }), ...(options.interceptors ?? [])],
    readMaxBytes: config.limits.maxRequestBytes,
    writeMaxBytes: maxResponseBytes(config.limits),
    shutdownSignal: shutdown.signal,
  });
  const server = createSinglePortServer({ handler, logger });
  const address = await server.listen(config.port, config.host);
  return {
    url: `http://${clientHost(address.address)}:${address.port}`,
    port: address.port,
    async close(): Promise<void> {
      if (!shutdown.signal.aborted) shutdown.abort(new ConnectError("the server is shutting down", Code.Unavailable));
      await server.close();
    },
  };
}

/** A host a client on this machine can connect to: the wildcard addresses are not. */
function clientHost(address: string): string {
  if (address === "0.0.0.0") return "127.0.0.1";
  if (address === "::") return "[::1]";
  return address.includes(":") ? `[${address}]` : address;
}
