/**
 * Calls the functions of the script library (scripts.ts) with FCALL, loading
 * the library where Redis lacks it. Redis keeps functions in RDB and AOF and
 * replicates them, but a Redis that starts empty, an emptied one (FUNCTION
 * FLUSH) or a cluster primary that never had them answers "Function not
 * found": nothing ran, so the library is loaded (on every primary of a
 * cluster, once for all the calls that met the error together) and the call
 * is sent once more. Loading needs FUNCTION LOAD in the user's ACL (README).
 */
import { Cluster, Command, type Redis } from "ioredis";

/** A Buffer goes as its bytes (a session id's index member, keys.ts indexMember). */
export type ScriptArg = string | number | Buffer;

/**
 * FCALL with the reply's strings as Buffers. ioredis 6.0.0 makes a Buffer
 * variant of every command (Commander: `<command>Buffer`) but declares none
 * for FCALL; callBuffer("FCALL", ...) is not usable, as its auto-pipelined
 * path drops the command's name (autoPipelining.js restores it for call only).
 */
interface FcallBuffer {
  fcallBuffer(fn: string, numkeys: number, ...args: (string | number | Buffer)[]): Promise<unknown>;
}

export class ScriptLibraryCaller {
  private loading: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly source: string,
  ) {}

  /** FCALL of `fn` with one key (it routes the call in a cluster) and `args`. */
  call(fn: string, key: string, args: readonly ScriptArg[]): Promise<unknown> {
    return this.withLibrary(() => this.redis.call("FCALL", fn, 1, key, ...args));
  }

  /** call(), with the reply's strings left as Buffers (a batch's packed reply: packed-reply.ts reads it). */
  callForBuffers(fn: string, key: string, args: readonly ScriptArg[]): Promise<unknown> {
    const redis = this.redis as (Redis | Cluster) & FcallBuffer;
    return this.withLibrary(() => redis.fcallBuffer(fn, 1, key, ...args));
  }

  /**
   * callForBuffers(), written to the connection now rather than with the
   * rest of this turn's commands (the command connection's automatic
   * pipeline, connections.ts, writes those when the turn ends).
   */
  callForBuffersAtOnce(fn: string, key: string, args: readonly ScriptArg[]): Promise<unknown> {
    return this.withLibrary(() => {
      // sendCommand goes around the automatic pipeline; a null reply encoding leaves strings as Buffers.
      const command = new Command("fcall", [fn, 1, key, ...args], { replyEncoding: null });
      void this.redis.sendCommand(command);
      return command.promise;
    });
  }

  private async withLibrary(send: () => Promise<unknown>): Promise<unknown> {
    try {
      return await send();
    } catch (error) {
      if (!isFunctionMissing(error)) throw error;
      await this.load();
      return await send();
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
