/**
 * Node defines some globals as accessors: `Buffer` and `process` behind a
 * getter kept for an ES-module deprecation path, `performance` behind a lazy
 * one. Every read of them, ours and our dependencies' (ioredis reads `Buffer`
 * for every argument of every command it writes), is then a call of that
 * getter through V8's global-load stub rather than a constant in optimized
 * code. Here they become plain properties holding the same values, writable
 * and configurable as before.
 */
const ACCESSOR_GLOBALS = ["Buffer", "process", "performance"] as const;

export function bindAccessorGlobals(): void {
  for (const name of ACCESSOR_GLOBALS) {
    const descriptor = Object.getOwnPropertyDescriptor(globalThis, name);
    if (descriptor?.get === undefined || descriptor.configurable !== true) continue;
    const value: unknown = descriptor.get.call(globalThis);
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: descriptor.enumerable === true });
  }
}
