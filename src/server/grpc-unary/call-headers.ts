/**
 * A Headers for one call's metadata, backed by a Map.
 *
 * Interceptors and handlers read and write metadata through the Fetch API's
 * Headers interface. Node's implementation validates and converts every name
 * and value through WebIDL, which for three Headers per call is a measurable
 * share of a unary call's CPU time. The names here come from Node's HTTP/2
 * parser (already lower-case and valid) or from our own code, so this class
 * only lower-cases names and joins repeated values with ", " as Headers does.
 */
import type { IncomingHttpHeaders } from "node:http2";

export class CallHeaders implements Headers {
  private readonly map = new Map<string, string>();

  /** From a plain record (names as keys) or another Headers. */
  constructor(init?: Readonly<Record<string, string>> | Headers) {
    if (init === undefined) return;
    if (isHeaders(init)) {
      init.forEach((value, name) => this.append(name, value));
    } else {
      for (const name in init) this.append(name, init[name]!);
    }
  }

  /** One field, its name already lower-case (ours). */
  static of(name: string, value: string): CallHeaders {
    const out = new CallHeaders();
    out.map.set(name, value);
    return out;
  }

  /**
   * The request metadata of an HTTP/2 stream as connect hands it to
   * interceptors: no pseudo-headers, repeated values joined. HTTP/2 field
   * names are lower-case (RFC 9113 section 8.2.1; Node's parser refuses others), so they are taken as they are.
   */
  static fromHttp2(headers: IncomingHttpHeaders): CallHeaders {
    const out = new CallHeaders();
    for (const name in headers) {
      if (name.charCodeAt(0) === 58 /* ":" */) continue;
      const value = headers[name];
      if (value === undefined) continue;
      out.map.set(name, typeof value === "string" ? value : value.join(", "));
    }
    return out;
  }

  append(name: string, value: string): void {
    const key = name.toLowerCase();
    const current = this.map.get(key);
    this.map.set(key, current === undefined ? String(value) : `${current}, ${value}`);
  }

  delete(name: string): void {
    this.map.delete(name.toLowerCase());
  }

  get(name: string): string | null {
    return this.map.get(name.toLowerCase()) ?? null;
  }

  getSetCookie(): string[] {
    const value = this.map.get("set-cookie");
    return value === undefined ? [] : [value];
  }

  has(name: string): boolean {
    return this.map.has(name.toLowerCase());
  }

  set(name: string, value: string): void {
    this.map.set(name.toLowerCase(), String(value));
  }

  forEach(callbackfn: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [key, value] of this.map) callbackfn.call(thisArg, value, key, this);
  }

  entries(): ReturnType<Headers["entries"]> {
    return this.map.entries() as ReturnType<Headers["entries"]>;
  }

  keys(): ReturnType<Headers["keys"]> {
    return this.map.keys() as ReturnType<Headers["keys"]>;
  }

  values(): ReturnType<Headers["values"]> {
    return this.map.values() as ReturnType<Headers["values"]>;
  }

  [Symbol.iterator](): ReturnType<Headers["entries"]> {
    return this.entries();
  }
}

function isHeaders(init: Readonly<Record<string, string>> | Headers): init is Headers {
  return typeof init.forEach === "function" && typeof init.get === "function";
}
