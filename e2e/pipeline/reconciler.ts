// The reconciler as a real process: the bundle `npm run build` produces
// (reconciler/dist/reconciler.mjs), authenticating with a ServiceAccount kubeconfig bound to the
// shipped RBAC, serving the waiter API and /readyz on loopback ports chosen once (a restart keeps
// them, as a pod behind a Service keeps its port). Faults: kill(signal) at any moment, restart().
//
//   const r = await runReconciler({ kubeconfig, namespaces: [ns], leaseNamespace: ns, logDir });
//   await r.kill("SIGKILL"); await r.start();
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../kit/ports.ts";
import { waitFor } from "../kit/wait.ts";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const RECONCILER_BUNDLE = path.join(repoRoot, "reconciler/dist/reconciler.mjs");

export interface ReconcilerOptions {
  kubeconfig: string;
  /** Namespaces to watch. */
  namespaces: string[];
  /** Namespace of the leader Lease (needs the shipped leader-election Role there). */
  leaseNamespace: string;
  /** Directory for the process's log file. */
  logDir: string;
  identity?: string;
  /** Short leases so fault tests see a failover in seconds (default 4 / 3 / 0.5 s). */
  leaseDurationSeconds?: number;
  renewDeadlineSeconds?: number;
  retryPeriodSeconds?: number;
  logLevel?: string;
  extraArgs?: string[];
  bundle?: string;
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const live = new Set<ChildProcess>();
let hookInstalled = false;
function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  process.on("exit", () => {
    for (const c of live) c.kill("SIGKILL");
  });
}

export class ReconcilerProcess {
  readonly opts: ReconcilerOptions;
  readonly identity: string;
  readonly waiterPort: number;
  readonly metricsPort: number;
  readonly logFile: string;
  #child: ChildProcess | undefined;
  #exited: Promise<ProcessExit> | undefined;
  /** How many times the process was started. */
  starts = 0;
  /** Exits that were not asked for (crashes): the tests assert there are none. */
  readonly unexpectedExits: ProcessExit[] = [];
  #expectExit = false;

  constructor(opts: ReconcilerOptions, waiterPort: number, metricsPort: number) {
    this.opts = opts;
    this.identity = opts.identity ?? `reconciler-${waiterPort}`;
    this.waiterPort = waiterPort;
    this.metricsPort = metricsPort;
    fs.mkdirSync(opts.logDir, { recursive: true });
    this.logFile = path.join(opts.logDir, `${this.identity}.log`);
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the process and waits until /readyz answers 200 (caches synced). */
  async start(timeoutMs = 30_000): Promise<void> {
    if (this.#child) throw new Error(`reconciler ${this.identity} is already running`);
    installExitHook();
    const o = this.opts;
    const args = [
      o.bundle ?? RECONCILER_BUNDLE,
      "--kubeconfig",
      o.kubeconfig,
      ...o.namespaces.flatMap((ns) => ["--namespace", ns]),
      "--leader-election-namespace",
      o.leaseNamespace,
      "--identity",
      this.identity,
      "--lease-duration",
      String(o.leaseDurationSeconds ?? 4),
      "--renew-deadline",
      String(o.renewDeadlineSeconds ?? 3),
      "--retry-period",
      String(o.retryPeriodSeconds ?? 0.5),
      "--waiter-port",
      String(this.waiterPort),
      "--metrics-port",
      String(this.metricsPort),
      "--bind-address",
      "127.0.0.1",
      "--log-level",
      o.logLevel ?? "debug",
      ...(o.extraArgs ?? []),
    ];
    const fd = fs.openSync(this.logFile, "a");
    fs.writeSync(fd, `\n=== ${new Date().toISOString()} start ${this.starts + 1}\n`);
    const child = spawn(process.execPath, args, { stdio: ["ignore", fd, fd], env: { ...process.env, KUBECONFIG: "" } });
    fs.closeSync(fd);
    this.starts++;
    this.#child = child;
    this.#expectExit = false;
    live.add(child);
    this.#exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        live.delete(child);
        if (this.#child === child) this.#child = undefined;
        const exit = { code, signal };
        if (!this.#expectExit) this.unexpectedExits.push(exit);
        resolve(exit);
      });
    });
    await waitFor(
      async () => {
        if (!this.#child) throw new Error(`reconciler exited during start-up:\n${this.tail()}`);
        const res = await fetch(`http://127.0.0.1:${this.metricsPort}/readyz`);
        await res.body?.cancel();
        return res.status === 200;
      },
      { what: `reconciler ${this.identity} to be ready`, timeoutMs, intervalMs: 50, describe: () => this.tail(10) },
    );
  }

  /** Sends `signal` and waits for the process to exit. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<ProcessExit | undefined> {
    const child = this.#child;
    if (!child || !this.#exited) return undefined;
    this.#expectExit = true;
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const exit = await this.#exited;
    clearTimeout(timer);
    return exit;
  }

  async restart(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await this.kill(signal);
    await this.start();
  }

  /** A graceful stop (SIGTERM: release the Lease, close the servers). */
  stop(): Promise<ProcessExit | undefined> {
    return this.kill("SIGTERM");
  }

  /** The Prometheus exposition of /metrics. */
  async metrics(): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`);
    return res.text();
  }

  /** The log's JSON lines, parsed (other lines skipped). */
  logLines(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.#readLog().split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a line cut by a SIGKILL
      }
    }
    return out;
  }

  tail(lines = 30): string {
    return this.#readLog().split("\n").slice(-lines).join("\n");
  }

  #readLog(): string {
    try {
      return fs.readFileSync(this.logFile, "utf8");
    } catch {
      return "";
    }
  }
}

/** Picks free ports, starts the reconciler and waits until it is ready. */
export async function runReconciler(opts: ReconcilerOptions): Promise<ReconcilerProcess> {
  const [waiterPort, metricsPort] = [await freePort(), await freePort()];
  const r = new ReconcilerProcess(opts, waiterPort, metricsPort);
  await r.start();
  return r;
}
