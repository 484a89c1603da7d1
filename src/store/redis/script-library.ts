/**
 * Calls the functions of the script library (scripts.ts) with FCALL, loading
 * the library where Redis lacks it. Redis keeps functions in RDB and AOF and
 * replicates them, but a Redis that starts empty, an emptied one (FUNCTION
 * FLUSH) or a cluster primary that never had them answers "Function not
 * found": nothing ran, so the library is loaded (on every primary of a
 * cluster, once for all the calls that met the error together) and the call
 * is sent once more. Loading needs FUNCTION LOAD in the user's ACL (README).
 */
import { Cluster, type Redis } from "ioredis";

/** A Buffer goes as its bytes (a session id's index member, keys.ts indexMember). */
export type ScriptArg = string | number | Buffer;

export class ScriptLibraryCaller {
  private loading: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly source: string,
  ) {}

  /** FCALL of `fn` with one key (it routes the call in a cluster) and `args`. */
  async call(fn: string, key: string, args: readonly ScriptArg[]): Promise<unknown> {
    try {
      return await this.redis.call("FCALL", fn, 1, key, ...args);
    } catch (error) {
      if (!isFunctionMissing(error)) throw error;
      await this.load();
      return await this.redis.call("FCALL", fn, 1, key, ...args);
    }
  }

  private load(): Promise<void> {
    this.loading ??= this.loadOnPrimaries().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  /** A primary that refuses the load leaves its error to the call sent again. */
  private async loadOnPrimaries(): Promise<void> {
    const nodes = this.redis instanceof Cluster ? this.redis.nodes("master") : [this.redis];
    await Promise.allSettled(nodes.map((node) => node.call("FUNCTION", "LOAD", "REPLACE", this.source)));
  }
}

function isFunctionMissing(e: unknown): boolean {
  return e instanceof Error && e.name === "ReplyError" && /^ERR Function not found/.test(e.message);
}
