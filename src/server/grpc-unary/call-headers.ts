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
  /**
   * A stream's request headers not yet copied into `map`: read in place (a
   * call reads a few of them, and most calls change none), copied on the
   * first change or walk.
   */
  private http2: IncomingHttpHeaders | undefined = undefined;

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
    out.http2 = headers;
    return out;
  }

  /** The map with the stream's headers in it (copied once, before a change or a walk). */
  private fields(): Map<string, string> {
    const headers = this.http2;
    if (headers !== undefined) {
      this.http2 = undefined;
      for (const name in headers) {
        const value = fieldValue(headers, name);
        if (value !== null) this.map.set(name, value);
      }
    }
    return this.map;
  }

  append(name: string, value: string): void {
    const map = this.fields();
    const key = name.toLowerCase();
    const current = map.get(key);
    map.set(key, current === undefined ? String(value) : `${current}, ${value}`);
  }

  delete(name: string): void {
    this.fields().delete(name.toLowerCase());
  }

  get(name: string): string | null {
    const key = name.toLowerCase();
    if (this.http2 !== undefined) return fieldValue(this.http2, key);
    return this.map.get(key) ?? null;
  }

  getSetCookie(): string[] {
    const value = this.get("set-cookie");
    return value === null ? [] : [value];
  }

  has(name: string): boolean {
    return this.get(name) !== null;
  }

  set(name: string, value: string): void {
    this.fields().set(name.toLowerCase(), String(value));
  }

  forEach(callbackfn: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [key, value] of this.fields()) callbackfn.call(thisArg, value, key, this);
  }

  entries(): ReturnType<Headers["entries"]> {
    return this.fields().entries() as ReturnType<Headers["entries"]>;
  }

  keys(): ReturnType<Headers["keys"]> {
    return this.fields().keys() as ReturnType<Headers["keys"]>;
  }

  values(): ReturnType<Headers["values"]> {
    return this.fields().values() as ReturnType<Headers["values"]>;
  }

  [Symbol.iterator](): ReturnType<Headers["entries"]> {
    return this.entries();
  }
}

/** A request field's value as Headers gives it (repeated values joined); null for a pseudo-header or an absent one. */
function fieldValue(headers: IncomingHttpHeaders, name: string): string | null {
  if (name.charCodeAt(0) === 58 /* ":" */) return null;
  // Own fields only: Node's header object has no prototype, but a name such as "constructor" must not reach one.
  if (!Object.hasOwn(headers, name)) return null;
  const value = headers[name];
  if (value === undefined) return null;
  return typeof value === "string" ? value : value.join(", ");
}

function isHeaders(init: Readonly<Record<string, string>> | Headers): init is Headers {
  return typeof init.forEach === "function" && typeof init.get === "function";
}
