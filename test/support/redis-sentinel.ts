/**
 * A private Redis Sentinel setup on loopback for one test file: a primary,
 * replicas started with --replicaof, and sentinels started with
 * `redis-server <conf> --sentinel` (their config files, which Sentinel
 * rewrites, live in a temp directory removed at stop). Persistence is off, as
 * in test/support/redis-server.ts, so a killed primary that is started again
 * comes back empty: start it only after the failover (restart()).
 *
 * Sentinel timings are low (down-after-milliseconds, failover-timeout) so a
 * failover takes seconds; the waits here are generous for a loaded machine.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis, type RedisOptions } from "ioredis";
import type { RedisSentinelTarget } from "../../src/store/redis/connections.js";
import { after, before } from "node:test";
import { freePort, waitForPing } from "./redis-server.js";
import { makeSelfSignedCertificate } from "./tls.js";

export const SENTINEL_MASTER = "sessiond-test";

export interface SentinelNode {
  readonly port: number;
  /** A fresh connection to this one process (close it). */
  client(): Redis;
}

export interface SentinelSetup {
  /** What a store connects with (REDIS_SENTINELS, REDIS_SENTINEL_MASTER). */
  readonly target: RedisSentinelTarget;
  /** The data nodes: [0] was started as the primary, the others as its replicas. */
  readonly nodes: readonly SentinelNode[];
  readonly sentinels: readonly SentinelNode[];
  /** The port of the primary the sentinels name now. */
  primaryPort(): Promise<number>;
  /** SIGKILL of one data node (its data is gone: persistence is off). */
  kill(node: SentinelNode): Promise<void>;
  /**
   * Starts a killed node again on its port, empty, as a replica of
   * `primaryPort` (what Sentinel would make it), with replica-priority 0: a
   * further failover (a busy machine can make the sentinels see the new
   * primary down) must not promote it before it has synced.
   */
  restart(node: SentinelNode, primaryPort: number): Promise<void>;
  /** Resolves with the new primary's port once the sentinels name another than `oldPort` and it answers as a primary. */
  waitForFailover(oldPort: number, timeoutMs?: number): Promise<number>;
  /** Resolves once every sentinel knows the other sentinels and every live replica, and the replicas are in sync. */
  waitSettled(timeoutMs?: number): Promise<void>;
  /** Resolves once every live replica has what the primary had written when this was called. */
  waitReplicated(timeoutMs?: number): Promise<void>;
  /** Resolves once the node's replication link is down (it noticed its primary is gone). */
  waitLinkDown(node: SentinelNode, timeoutMs?: number): Promise<void>;
  /** Stops every process and removes the temp directory. */
  stop(): Promise<void>;
}

export interface SentinelOptions {
  /** Replicas of the primary (default 1). */
  readonly replicas?: number;
  /** Sentinels (default 3; quorum is a majority). */
  readonly sentinels?: number;
  /** Extra redis-server arguments of every data node. */
  readonly nodeArgs?: readonly string[];
  readonly downAfterMs?: number;
  readonly failoverTimeoutMs?: number;
  /**
   * ACL users besides the default one (which stays without a password, so a
   * client that sent these passwords without the user names would be refused):
   * `user` on every data node, `sentinelUser` on every sentinel. The target
   * names them.
   */
  readonly acl?: { readonly user: string; readonly password: string; readonly sentinelUser: string; readonly sentinelPassword: string };
  /** TLS only (tls-port, tls-replication) on every data node and sentinel, with a self-signed certificate for 127.0.0.1; the target's tls.ca verifies it. */
  readonly tls?: boolean;
}

interface Proc {
  child: ChildProcess | undefined;
  readonly port: number;
  /** redis-server's arguments; restart() points a node at the new primary. */
  args: string[];
}

function connect(port: number, access: RedisOptions): Redis {
  const client = new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: 1, retryStrategy: () => 100, ...access });
  client.on("error", () => {}); // nodes are killed on purpose; commands still reject
  return client;
}

async function launch(proc: Proc, access: RedisOptions): Promise<void> {
  const child = spawn("redis-server", proc.args, { stdio: "ignore" });
  proc.child = child;
  await waitForPing(proc.port, child, 20_000, access);
}

async function kill(proc: Proc): Promise<void> {
  const child = proc.child;
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGKILL");
  await exited;
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`redis sentinel setup: ${what} did not happen within ${timeoutMs} ms`);
    await sleep(100);
  }
}

function field(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*)$`, "m").exec(info)?.[1]?.trim();
}

export async function startRedisSentinel(options: SentinelOptions = {}): Promise<SentinelSetup> {
  const replicaCount = options.replicas ?? 1;
  const sentinelCount = options.sentinels ?? 3;
  const quorum = Math.floor(sentinelCount / 2) + 1;
  const dir = mkdtempSync(join(tmpdir(), "sessiond-sentinel-"));
  const cert = options.tls === true ? makeSelfSignedCertificate(dir) : undefined;
  const ca = cert === undefined ? undefined : readFileSync(cert.certFile, "utf8");
  /** How this harness reaches every process (the default user needs no password). */
  const access: RedisOptions = ca === undefined ? {} : { tls: { ca } };
  const tlsConf = cert === undefined ? [] : [["tls-cert-file", cert.certFile], ["tls-key-file", cert.keyFile], ["tls-ca-cert-file", cert.certFile], ["tls-auth-clients", "no"], ["tls-replication", "yes"]];
  const listen = (port: number): string[][] => (cert === undefined ? [["port", String(port)]] : [["port", "0"], ["tls-port", String(port)], ...tlsConf]);
  const acl = options.acl;
  // --dir: a replica writes the snapshot of its full sync there, never in the working directory.
  const base = [
    "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no", "--loglevel", "warning",
    ...(acl === undefined ? [] : ["--user", acl.user, "on", `>${acl.password}`, "~*", "&*", "+@all"]),
    ...(options.nodeArgs ?? []),
  ];
  const nodeArgs = (port: number): string[] => [...listen(port).flatMap(([name, value]) => [`--${name}`, value as string]), ...base];
  const nodes: Proc[] = [];
  const sentinels: Proc[] = [];
  const setup = async (): Promise<void> => {
    const primaryPort = await freePort();
    const primary: Proc = { child: undefined, port: primaryPort, args: nodeArgs(primaryPort) };
    nodes.push(primary);
    await launch(primary, access);
    for (let i = 0; i < replicaCount; i++) {
      const port = await freePort();
      const replica: Proc = { child: undefined, port, args: [...nodeArgs(port), "--replicaof", "127.0.0.1", String(primaryPort)] };
      nodes.push(replica);
      await launch(replica, access);
    }
    for (let i = 0; i < sentinelCount; i++) {
      const port = await freePort();
      const conf = join(dir, `sentinel-${port}.conf`);
      writeFileSync(
        conf,
        [
          ...listen(port).map(([name, value]) => `${name} ${value}`),
          ...(acl === undefined ? [] : [`user ${acl.sentinelUser} on >${acl.sentinelPassword} ~* &* +@all`]),
          "bind 127.0.0.1",
          `dir ${dir}`,
          `sentinel monitor ${SENTINEL_MASTER} 127.0.0.1 ${primaryPort} ${quorum}`,
          `sentinel down-after-milliseconds ${SENTINEL_MASTER} ${options.downAfterMs ?? 2000}`,
          `sentinel failover-timeout ${SENTINEL_MASTER} ${options.failoverTimeoutMs ?? 4000}`,
          `sentinel parallel-syncs ${SENTINEL_MASTER} 1`,
          "",
        ].join("\n"),
      );
      const sentinel: Proc = { child: undefined, port, args: [conf, "--sentinel", "--loglevel", "warning"] };
      sentinels.push(sentinel);
      await launch(sentinel, access);
    }
  };
  const stop = async (): Promise<void> => {
    await Promise.all([...sentinels, ...nodes].map(kill));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await setup();
  } catch (error) {
    await stop();
    throw error;
  }

  const node = (proc: Proc): SentinelNode => ({ port: proc.port, client: () => connect(proc.port, access) });
  const procOf = (n: SentinelNode): Proc => {
    const proc = nodes.find((p) => p.port === n.port);
    if (proc === undefined) throw new Error(`no data node on port ${n.port}`);
    return proc;
  };
  /** Asks one sentinel after another; undefined when none answers. */
  const askSentinels = async <T>(ask: (client: Redis) => Promise<T>): Promise<T | undefined> => {
    for (const sentinel of sentinels) {
      const client = new Redis({ port: sentinel.port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, ...access });
      client.on("error", () => {});
      try {
        await client.connect();
        return await ask(client);
      } catch {
        // try the next
      } finally {
        client.disconnect();
      }
    }
    return undefined;
  };
  const primaryPortNow = async (): Promise<number> => {
    const reply = await askSentinels((c) => c.call("SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER) as Promise<[string, string] | null>);
    if (reply === undefined || reply === null) throw new Error("no sentinel names a primary");
    return Number(reply[1]);
  };
  const infoOf = async (port: number): Promise<string> => {
    const client = connect(port, access);
    try {
      return await client.info("replication");
    } finally {
      client.disconnect();
    }
  };

  return {
    target: {
      sentinels: sentinels.map((s) => ({ host: "127.0.0.1", port: s.port })),
      masterName: SENTINEL_MASTER,
      ...(acl === undefined ? {} : { username: acl.user, password: acl.password, sentinelUsername: acl.sentinelUser, sentinelPassword: acl.sentinelPassword }),
      ...(ca === undefined ? {} : { tls: { ca } }),
    },
    nodes: nodes.map(node),
    sentinels: sentinels.map(node),
    primaryPort: primaryPortNow,
    kill: (n) => kill(procOf(n)),
    async restart(n, primaryPort) {
      const proc = procOf(n);
      await kill(proc);
      proc.args = [...nodeArgs(proc.port), "--replicaof", "127.0.0.1", String(primaryPort), "--replica-priority", "0"];
      await launch(proc, access);
    },
    waitForFailover: (oldPort, timeoutMs = 60_000) =>
      until("a failover", timeoutMs, async () => {
        const port = await primaryPortNow();
        if (port === oldPort) return undefined;
        return field(await infoOf(port), "role") === "master" ? port : undefined;
      }),
    waitSettled: (timeoutMs = 60_000) =>
      until("sentinel discovery and replica sync", timeoutMs, async () => {
        const primary = await primaryPortNow();
        const live = nodes.filter((p) => p.child !== undefined && p.child.exitCode === null && p.child.signalCode === null && p.port !== primary);
        for (const sentinel of sentinels) {
          const client = connect(sentinel.port, access);
          try {
            const reply = (await client.call("SENTINEL", "master", SENTINEL_MASTER)) as string[];
            const h = new Map<string, string>();
            for (let i = 0; i + 1 < reply.length; i += 2) h.set(reply[i] as string, reply[i + 1] as string);
            if (Number(h.get("num-other-sentinels")) < sentinels.length - 1) return undefined;
            const replicas = (await client.call("SENTINEL", "replicas", SENTINEL_MASTER)) as string[][];
            const known = replicas.filter((r) => {
              const flags = r[r.indexOf("flags") + 1] ?? "";
              return !flags.includes("down") && !flags.includes("disconnected");
            });
            if (known.length < live.length) return undefined;
          } finally {
            client.disconnect();
          }
        }
        const offset = Number(field(await infoOf(primary), "master_repl_offset"));
        for (const replica of live) {
          const info = await infoOf(replica.port);
          if (field(info, "master_link_status") !== "up" || Number(field(info, "slave_repl_offset")) < offset) return undefined;
        }
        return true;
      }).then(() => undefined),
    async waitReplicated(timeoutMs = 30_000) {
      const primary = await primaryPortNow();
      const offset = Number(field(await infoOf(primary), "master_repl_offset"));
      const live = nodes.filter((p) => p.child !== undefined && p.child.exitCode === null && p.child.signalCode === null && p.port !== primary);
      await until("replication", timeoutMs, async () => {
        for (const replica of live) {
          if (!(Number(field(await infoOf(replica.port), "slave_repl_offset")) >= offset)) return undefined;
        }
        return true;
      });
    },
    waitLinkDown: (n, timeoutMs = 30_000) =>
      until("a replication link down", timeoutMs, async () => (field(await infoOf(n.port), "master_link_status") === "down" ? true : undefined)).then(() => undefined),
    stop,
  };
}

/**
 * Registers `before`/`after` hooks in the calling file or `describe` block
 * that start a settled Sentinel setup and stop it afterwards; read `setup`
 * inside tests and hooks only.
 */
export function useRedisSentinel(options: SentinelOptions = {}): { readonly setup: SentinelSetup } {
  let setup: SentinelSetup | undefined;
  before(async () => {
    setup = await startRedisSentinel(options);
    await setup.waitSettled();
  });
  after(async () => {
    await setup?.stop();
  });
  return {
    get setup(): SentinelSetup {
      if (setup === undefined) throw new Error("useRedisSentinel: the setup starts in before(); use it inside tests");
      return setup;
    },
  };
}
