/**
 * Tells plaintext HTTP/2 (h2c "prior knowledge") from HTTP/1.x by the first
 * bytes of a connection.
 *
 * An h2c client opens with the fixed 24-byte connection preface (RFC 9113
 * §3.4). Without TLS there is no ALPN to negotiate the protocol, and Node's
 * http2 `allowHTTP1` only works with TLS, so one port serving both has to look
 * at the bytes. An HTTP/1 request line can never start with the full preface
 * ("PRI" is not a method any HTTP/1 server accepts), so the first byte that
 * differs decides HTTP/1, and all 24 matching bytes decide HTTP/2.
 */

/** "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" */
export const HTTP2_PREFACE: Buffer = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export type PrefaceKind =
  /** The connection starts with the full HTTP/2 preface. */
  | "http2"
  /** The connection cannot be HTTP/2 prior knowledge. */
  | "http1"
  /** Every byte so far matches the preface, but it is not complete yet. */
  | "undecided";

/** Classifies the bytes received so far on a connection. */
export function classifyPreface(head: Uint8Array): PrefaceKind {
  const n = Math.min(head.length, HTTP2_PREFACE.length);
  for (let i = 0; i < n; i++) {
    if (head[i] !== HTTP2_PREFACE[i]) return "http1";
  }
  return n === HTTP2_PREFACE.length ? "http2" : "undecided";
}
