/**
 * A bounded cache of values by scope (a tenant) and key (a name): what
 * sealed-names.ts and partition-secret.ts remember about the names they
 * hash and seal. Scope and key are never joined into one string, so no
 * choice of tenant and name can reach another pair's value; at `limit`
 * entries in all it starts over empty (no entry outlives that, and memory
 * stays bounded without the bookkeeping of an LRU).
 */
export class ScopedCache<V> {
  private readonly scopes = new Map<string, Map<string, V>>();
  private count = 0;

  constructor(private readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new Error("a ScopedCache holds at least one entry");
  }

  get(scope: string, key: string): V | undefined {
    return this.scopes.get(scope)?.get(key);
  }

  set(scope: string, key: string, value: V): void {
    let entries = this.scopes.get(scope);
    if (entries?.has(key) !== true) {
      if (this.count >= this.limit) {
        this.scopes.clear();
        this.count = 0;
        entries = undefined;
      }
      this.count += 1;
    }
    if (entries === undefined) {
      entries = new Map();
      this.scopes.set(scope, entries);
    }
    entries.set(key, value);
  }

  /** Entries held (at most the limit). */
  get size(): number {
    return this.count;
  }
}
