/**
 * Captures the caller's address and verified client certificate from the Node
 * request into the call's context values (connectNodeAdapter's contextValues
 * hook), because Connect handler contexts do not expose the socket.
 */
import type { Http2ServerRequest, ServerHttp2Stream } from "node:http2";
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { createContextValues, type ContextValues } from "@connectrpc/connect";
import { PEER, PRINCIPAL, type PeerInfo } from "./principal.js";
import { principalOfRequest } from "./request-gate.js";

/** Where a call came from: its Node request, or its HTTP/2 stream (the fast gRPC unary path). */
export type CallOrigin = IncomingMessage | Http2ServerRequest | ServerHttp2Stream;

/** The peer, and the principal when the pre-dispatch gate already authenticated the request. */
export function peerContextValues(request: CallOrigin): ContextValues {
  const values = createContextValues();
  values.set(PEER, peerOf(request));
  const principal = principalOfRequest(request);
  if (principal !== undefined) values.set(PRINCIPAL, principal);
  return values;
}

/** Per connection: its peer does not change while it is open, and every call on it asks (twice). */
const peers = new WeakMap<Socket, PeerInfo>();

export function peerOf(request: CallOrigin): PeerInfo {
  // HTTP/2: the session's socket (request.socket is a proxy that refuses some calls).
  const socket: Socket | undefined =
    "stream" in request ? request.stream.session?.socket : "session" in request ? request.session?.socket : request.socket;
  if (socket === undefined) return { address: "" };
  const known = peers.get(socket);
  if (known !== undefined) return known;
  const address = socket.remoteAddress === undefined ? "" : formatAddress(socket.remoteAddress, socket.remotePort);
  const cn = socket instanceof TLSSocket ? verifiedCommonName(socket) : undefined;
  const peer: PeerInfo = cn === undefined ? { address } : { address, verifiedCertCommonName: cn };
  // A closed socket no longer knows its address: not remembered as the connection's peer.
  if (address !== "") peers.set(socket, peer);
  return peer;
}

/** The CN of a client certificate, only when TLS verified it against the configured CA. */
function verifiedCommonName(socket: TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const cn = socket.getPeerCertificate().subject?.CN;
  // A CN may be repeated (an array); such a certificate names no single principal.
  return typeof cn === "string" && cn !== "" ? cn : undefined;
}

function formatAddress(ip: string, port: number | undefined): string {
  const host = ip.includes(":") ? `[${ip}]` : ip;
  return port === undefined ? host : `${host}:${port}`;
}
