/**
 * Starts a private Redis Cluster on loopback for one test file (or bench):
 * `primaries` redis-server processes in cluster mode, each with `replicas`
 * replicas, joined by `redis-cli --cluster create`. Helpers inject the faults
 * the cluster tests need: kill -9 a primary and wait for its replica's
 * promotion, and move slots with `redis-cli --cluster reshard`.
 *
 * redis-server and redis-cli must be on PATH; a missing binary fails the run.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis, type RedisOptions } from "ioredis";
import { makeSelfSignedCertificate } from "./tls.js";
import { freeClusterPort, waitForPing } from "./redis-server.js";

export interface ClusterNode {
  readonly port: number;
  /** Whether the process runs (kill() ends it). */
  readonly alive: boolean;
  /** kill -9. */
  kill(): Promise<void>;
  /** SIGSTOP: the process stays, answers nothing (a replica stops acknowledging replication) until resume(). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
}

export interface RedisClusterHandle {
  readonly nodes: readonly ClusterNode[];
  /** "127.0.0.1:port,..." of every node, as REDIS_CLUSTER_NODES takes them. */
  readonly seeds: string;
  /** The node serving a slot as primary now. */
  primaryOf(slot: number): Promise<ClusterNode>;
  /** Every live primary. */
  primaries(): Promise<ClusterNode[]>;
  /** The replicas of a primary. */
  replicasOf(primary: ClusterNode): Promise<ClusterNode[]>;
  /** Waits until every live node reports cluster_state:ok and every slot has a live primary. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Waits until every live primary has `replicas` replicas online (their first sync done: WAIT can count them). */
  waitReplicasOnline(replicas: number, timeoutMs?: number): Promise<void>;
  /** Moves `slots` slots from one primary to another with `redis-cli --cluster reshard`. */
  reshard(from: ClusterNode, to: ClusterNode, slots: number): Promise<void>;
  /** With options.tls: the PEM certificate that verifies every node. */
  readonly ca: string | undefined;
  /** A plain connection to one node (for CLUSTER and INFO commands). */
  client(node: ClusterNode): Redis;
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  readonly primaries?: number;
  readonly replicas?: number;
  /** cluster-node-timeout (ms): how soon a dead primary is failed over. */
  readonly nodeTimeoutMs?: number;
  /** requirepass and masterauth of every node (the default user's password): clients must AUTH. */
  readonly password?: string;
  /** TLS only (tls-port, tls-cluster, tls-replication) with a self-signed certificate for 127.0.0.1; handle.ca verifies it. */
  readonly tls?: boolean;
}

function run(command: string, args: readonly string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (out += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${command} ${args.slice(0, 3).join(" ")} exited with ${code}: ${out.slice(-500)}`));
    });
  });
}

export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisClusterHandle> {
  const primaries = options.primaries ?? 3;
  const replicas = options.replicas ?? 1;
  const dir = mkdtempSync(join(tmpdir(), "sd-cluster-"));
  const cert = options.tls === true ? makeSelfSignedCertificate(dir) : undefined;
  const ca = cert === undefined ? undefined : readFileSync(cert.certFile, "utf8");
  const cliAuth = [
    ...(options.password === undefined ? [] : ["-a", options.password, "--no-auth-warning"]),
    ...(cert === undefined ? [] : ["--tls", "--cacert", cert.certFile]),
  ];
  /** ioredis options every harness connection needs. */
  const access = { ...(options.password === undefined ? {} : { password: options.password }), ...(ca === undefined ? {} : { tls: { ca } }) };
  const procs: { port: number; child: ChildProcess }[] = [];
  const nodes: ClusterNode[] = [];
  for (let i = 0; i < primaries * (1 + replicas); i++) {
    const port = await freeClusterPort();
    const child = spawn(
      "redis-server",
      [
        ...(cert === undefined
          ? ["--port", String(port)]
          : ["--port", "0", "--tls-port", String(port), "--tls-cert-file", cert.certFile, "--tls-key-file", cert.keyFile,
             "--tls-ca-cert-file", cert.certFile, "--tls-auth-clients", "no", "--tls-cluster", "yes", "--tls-replication", "yes"]),
        "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning",
        "--cluster-enabled", "yes", "--cluster-config-file", join(dir, `nodes-${port}.conf`),
        "--cluster-node-timeout", String(options.nodeTimeoutMs ?? 1000), "--dir", dir,
        ...(options.password === undefined ? [] : ["--requirepass", options.password, "--masterauth", options.password]),
      ],
      { stdio: "ignore" },
    );
    const proc = { port, child };
    procs.push(proc);
    nodes.push({
      port,
      get alive() {
        return proc.child.exitCode === null && proc.child.signalCode === null;
      },
      kill: async () => {
        if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => proc.child.once("exit", () => resolve()));
        proc.child.kill("SIGKILL");
        await exited;
      },
      pause: () => {
        proc.child.kill("SIGSTOP");
      },
      resume: () => {
        proc.child.kill("SIGCONT");
      },
    });
  }
  const stop = async (): Promise<void> => {
    for (const node of nodes) await node.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const p of procs) await waitForPing(p.port, p.child, 15_000, access);
    await run("redis-cli", [...cliAuth, "--cluster", "create", ...procs.map((p) => `127.0.0.1:${p.port}`), "--cluster-replicas", String(replicas), "--cluster-yes"]);
  } catch (error) {
    await stop();
    throw error;
  }

  const client = (node: ClusterNode): Redis => {
    const c = new Redis({ port: node.port, host: "127.0.0.1", maxRetriesPerRequest: 1, retryStrategy: () => null, ...access });
    c.on("error", () => {});
    return c;
  };
  /** CLUSTER NODES as seen by a live node. */
  const clusterNodes = async (): Promise<{ id: string; primaryId: string; port: number; primary: boolean; failed: boolean; slots: [number, number][] }[]> => {
    for (const node of nodes.filter((n) => n.alive)) {
      const c = client(node);
      try {
        const text = (await c.call("CLUSTER", "NODES")) as string;
        return text
          .trim()
          .split("\n")
          .map((line) => {
            const f = line.split(" ");
            const port = Number((f[1] ?? "").split("@")[0]?.split(":")[1]);
            const flags = f[2] ?? "";
            const slots = f.slice(8).filter((s) => !s.startsWith("[")).map((s) => {
              const [a, b] = s.split("-");
              return [Number(a), Number(b ?? a)] as [number, number];
            });
            return { id: f[0] ?? "", primaryId: f[3] ?? "-", port, primary: flags.includes("master"), failed: flags.includes("fail") && !flags.includes("fail?") ? true : flags.includes("fail"), slots };
          });
      } catch {
        // ask the next node
      } finally {
        c.disconnect();
      }
    }
    throw new Error("no live cluster node answers");
  };
  const byPort = (port: number): ClusterNode => {
    const node = nodes.find((n) => n.port === port);
    if (node === undefined) throw new Error(`no node on port ${port}`);
    return node;
  };
  const handle: RedisClusterHandle = {
    nodes,
    seeds: procs.map((p) => `127.0.0.1:${p.port}`).join(","),
    ca,
    client,
    stop,
    primaryOf: async (slot) => {
      for (const n of await clusterNodes()) {
        if (n.primary && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b)) return byPort(n.port);
      }
      throw new Error(`no primary serves slot ${slot}`);
    },
    primaries: async () => (await clusterNodes()).filter((n) => n.primary && !n.failed && n.slots.length > 0).map((n) => byPort(n.port)).filter((n) => n.alive),
    replicasOf: async (primary) => {
      const all = await clusterNodes();
      const id = all.find((n) => n.port === primary.port)?.id;
      return all.filter((n) => n.primaryId === id).map((n) => byPort(n.port));
    },
    waitReplicasOnline: async (replicas, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        let ok = true;
        for (const primary of await handle.primaries()) {
          const c = client(primary);
          try {
            const info = (await c.info("replication")).match(/^slave\d+:.*state=online/gm) ?? [];
            if (info.length < replicas) ok = false;
          } catch {
            ok = false;
          } finally {
            c.disconnect();
          }
        }
        if (ok) return;
        if (Date.now() > deadline) throw new Error("the replicas did not come online");
        await sleep(100);
      }
    },
    waitHealthy: async (timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        let ok = true;
        for (const node of nodes.filter((n) => n.alive)) {
          const c = client(node);
          try {
            const info = (await c.call("CLUSTER", "INFO")) as string;
            if (!info.includes("cluster_state:ok")) ok = false;
          } catch {
            ok = false;
          } finally {
            c.disconnect();
          }
        }
        if (ok) {
          const served = (await clusterNodes()).filter((n) => n.primary && !n.failed && byPort(n.port).alive);
          const count = served.reduce((sum, n) => sum + n.slots.reduce((s, [a, b]) => s + b - a + 1, 0), 0);
          if (count === 16384) return;
        }
        if (Date.now() > deadline) throw new Error("the cluster did not become healthy");
        await sleep(100);
      }
    },
    reshard: async (from, to, slots) => {
      const ids = async (node: ClusterNode): Promise<string> => {
        const c = client(node);
        try {
          return (await c.call("CLUSTER", "MYID")) as string;
        } finally {
          c.disconnect();
        }
      };
      await run("redis-cli", [
        ...cliAuth, "--cluster", "reshard", `127.0.0.1:${from.port}`, "--cluster-from", await ids(from), "--cluster-to", await ids(to),
        "--cluster-slots", String(slots), "--cluster-yes", "--cluster-pipeline", "10",
      ], 120_000);
    },
  };
  await handle.waitHealthy();
  return handle;
}

/** A cluster for the tests of one file: started in before(), stopped in after(). */
export function useRedisCluster(options: RedisClusterOptions = {}): () => RedisClusterHandle {
  let handle: RedisClusterHandle | undefined;
  before(async () => {
    handle = await startRedisCluster(options);
  });
  after(async () => {
    await handle?.stop();
  });
  return () => {
    if (handle === undefined) throw new Error("useRedisCluster: the cluster starts in before(); use it inside tests");
    return handle;
  };
}
