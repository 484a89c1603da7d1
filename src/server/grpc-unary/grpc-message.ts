/**
 * The grpc-message header's encoding (gRPC over HTTP/2 spec, "Responses"):
 * percent-encode the UTF-8 bytes outside 0x20–0x7E, and "%" itself; every
 * other character stays as it is. encodeURIComponent (what connect writes)
 * also encodes ":", ",", "/" and more, which grpc-js decodes with decodeURI
 * and therefore hands to the caller still encoded.
 */

/** Only printable ASCII other than "%": nothing to encode. */
const PLAIN = /^[\x20-\x24\x26-\x7e]*$/;

export function encodeGrpcMessage(message: string): string {
  if (PLAIN.test(message)) return message;
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * Re-encodes a grpc-message value written with encodeURIComponent (connect's
 * handlers) the spec's way. A value that does not decode is left alone.
 */
export function reencodeGrpcMessage(value: string): string {
  try {
    return encodeGrpcMessage(decodeURIComponent(value));
  } catch {
    return value;
  }
}

/** What connect's node adapter needs of a response to write trailers. */
interface TrailerWriter {
  addTrailers(headers: Record<string, string | string[] | number | undefined> | readonly [string, string][]): void;
}

/**
 * Makes a response that connect answers a gRPC call on write grpc-message
 * the spec's way: its trailers pass through reencodeGrpcMessage.
 */
export function specGrpcMessageTrailers(response: TrailerWriter): void {
  const addTrailers = response.addTrailers.bind(response);
  response.addTrailers = (headers) => {
    if (!Array.isArray(headers)) {
      const record = headers as Record<string, string | string[] | number | undefined>;
      const message = record["grpc-message"];
      if (typeof message === "string") record["grpc-message"] = reencodeGrpcMessage(message);
    }
    addTrailers(headers);
  };
}
