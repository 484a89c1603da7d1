/**
 * Runs sessiond as a real child process (what an operator or a container
 * runs), reads its JSON log lines, and reports how it exits.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";

export interface SessiondProcess {
  readonly child: ChildProcess;
  /** Base URL from the startup line. */
  readonly url: string;
  /** The startup line, parsed. */
  readonly startup: Readonly<Record<string, unknown>>;
  /** Every stdout line so far, parsed (non-JSON lines are skipped). */
  lines(): Readonly<Record<string, unknown>>[];
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code (or the signal's name) when the process ends. */
  readonly exited: Promise<number | string>;
  /** Kills it if it is still running (test cleanup). */
  kill(): void;
}

export interface StartProcessOptions {
  readonly env: Readonly<Record<string, string>>;
  /** Default: ["--import", "tsx", "src/main.ts"] from the work tree. */
  readonly args?: readonly string[];
  readonly cwd?: string;
  /** How long to wait for the startup line (default 30 s). */
  readonly startTimeoutMs?: number;
}

export async function startSessiond(options: StartProcessOptions): Promise<SessiondProcess> {
  const child = spawn(process.execPath, [...(options.args ?? ["--import", "tsx", "src/main.ts"])], {
    cwd: options.cwd ?? process.cwd(),
    // No readiness delay on SIGTERM unless a test asks for one (test/lifecycle.test.ts does).
    env: { PATH: process.env["PATH"] ?? "", HOST: "127.0.0.1", PORT: "0", SHUTDOWN_DELAY: "0s", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const parsed: Record<string, unknown>[] = [];
  let stdout = "";
  let stderr = "";
  let onLine: (() => void) | undefined;
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
    let newline = stdout.indexOf("\n");
    while (newline !== -1) {
      const text = stdout.slice(0, newline);
      stdout = stdout.slice(newline + 1);
      try {
        parsed.push(JSON.parse(text) as Record<string, unknown>);
      } catch {
        // not a log line
      }
      newline = stdout.indexOf("\n");
    }
    onLine?.();
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = once(child, "exit").then(([code, signal]) => (code as number | null) ?? String(signal));

  const startup = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no startup line within the timeout; stderr: ${stderr}`)), options.startTimeoutMs ?? 30_000);
    const check = (): void => {
      const line = parsed.find((l) => String(l["msg"]).startsWith("sessiond listening"));
      if (line === undefined) return;
      clearTimeout(timer);
      resolve(line);
    };
    onLine = check;
    void exited.then((code) => {
      clearTimeout(timer);
      const last = parsed.slice(-3).map((l) => JSON.stringify(l)).join("\n");
      reject(new Error(`sessiond exited (${code}) before it listened; stderr: ${stderr}; last log lines:\n${last}`));
    });
  });
  onLine = undefined;
  return {
    child,
    url: String(startup["address"]),
    startup,
    lines: () => [...parsed],
    stderr: () => stderr,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}
