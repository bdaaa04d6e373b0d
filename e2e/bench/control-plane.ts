// The real control plane for the latency and scale benchmarks (e2e/cluster), with an audit log that
// records every request of the reconciler's ServiceAccount and nothing else — so API requests are
// counted at the apiserver, by verb, whoever else (the benchmark, the node emulator, the controller
// manager) talks to it. The reconciler runs as its own process (reconciler-runner.ts, bundled) under
// that ServiceAccount with the shipped RBAC (reconciler/deploy/rbac.yaml).
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { API_VERSION, PLURAL } from "@digest-migrations/shared";
import type { KubeObject } from "@digest-migrations/shared";
import { startCluster } from "../cluster/cluster.ts";
import type { Cluster } from "../cluster/cluster.ts";
import { waitFor } from "../kit/wait.ts";
import { bundle } from "../../scripts/bundle.ts";
import { ApiError, KubeClient } from "../kit/client.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
export const BENCH_NAMESPACE = "bench";
const SERVICE_ACCOUNT = "digest-migrations-reconciler";
export const RECONCILER_USER = `system:serviceaccount:${BENCH_NAMESPACE}:${SERVICE_ACCOUNT}`;

export interface BenchCluster {
  cluster: Cluster;
  /** Admin client. */
  kube: KubeClient;
  /** Kubeconfig of the reconciler's ServiceAccount. */
  reconcilerKubeconfig: string;
  auditLog: string;
  /** The bundled reconciler runner. */
  runner: string;
  stop(): Promise<void>;
}

function docs(file: string): KubeObject[] {
  return parseAllDocuments(readFileSync(path.join(repo, file), "utf8"))
    .map((d) => d.toJSON() as KubeObject | null)
    .filter((d): d is KubeObject => d !== null);
}

async function createOrKeep(kube: KubeClient, obj: KubeObject): Promise<void> {
  try {
    await kube.createObject(obj);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409)) throw error;
  }
}

export async function startBenchCluster(workDir: string, log: (line: string) => void): Promise<BenchCluster> {
  const auditPolicy = path.join(workDir, "audit-policy.yaml");
  const auditLog = path.join(workDir, "audit.log");
  writeFileSync(
    auditPolicy,
    [
      "apiVersion: audit.k8s.io/v1",
      "kind: Policy",
      "omitStages: [RequestReceived]",
      "rules:",
      "  - level: Metadata",
      `    users: ["${RECONCILER_USER}"]`,
      "  - level: None",
      "",
    ].join("\n"),
  );
  const runner = path.join(workDir, "reconciler-runner.mjs");
  // Bundled as the shipped reconciler is (scripts/bundle.ts), so the runner's memory and start-up are what ships.
  await bundle(path.join(here, "reconciler-runner.ts"), runner, { sourcemap: false });
  log("control plane: starting (kube-apiserver with an audit log of the reconciler's requests)");
  const cluster = await startCluster({
    log: (line) => log(`control plane: ${line}`),
    apiserverArgs: [
      `--audit-policy-file=${auditPolicy}`,
      `--audit-log-path=${auditLog}`,
      "--audit-log-format=json",
      "--audit-log-mode=blocking",
    ],
  });
  try {
    const kube = KubeClient.fromFile(cluster.adminKubeconfig);
    await cluster.ensureNamespace(BENCH_NAMESPACE);
    for (const crd of docs("reconciler/deploy/crd.yaml")) await createOrKeep(kube, crd);
    await waitFor(
      async () =>
        ((await kube.get<{ resources?: { name: string }[] }>(`/apis/${API_VERSION}`)).resources ?? []).some(
          (r) => r.name === PLURAL,
        ),
      { what: "the Migrator CRD to be served", timeoutMs: 30_000 },
    );
    const reconcilerKubeconfig = await cluster.kubeconfigFor(BENCH_NAMESPACE, SERVICE_ACCOUNT);
    const role = docs("reconciler/deploy/rbac.yaml").find((d) => d.kind === "ClusterRole");
    if (role === undefined) throw new Error("reconciler/deploy/rbac.yaml has no ClusterRole");
    await createOrKeep(kube, role);
    await createOrKeep(kube, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: `${role.metadata.name}-bench` },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata.name },
      subjects: [{ kind: "ServiceAccount", name: SERVICE_ACCOUNT, namespace: BENCH_NAMESPACE }],
    });
    return { cluster, kube, reconcilerKubeconfig, auditLog, runner, stop: () => cluster.stop() };
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}

export interface RunningReconciler {
  process: ChildProcess;
  pid: number;
  /** Base URL of its waiter API. */
  url: string;
  /** Milliseconds from process start to caches synced (its own clock). */
  syncedMs: number;
  /** Wall-clock time (Date.now()) when synced was reported. */
  syncedAt: number;
  /** The runner's process.memoryUsage() sample (once a second) with the largest rss so far. */
  readonly peakMemory: NodeJS.MemoryUsage | undefined;
  stop(): Promise<void>;
}

/** NODE_OPTIONS of the shipped Deployment (reconciler/deploy/deployment.yaml), so the runner's memory is what ships. */
export function shippedNodeOptions(): string {
  const deployment = docs("reconciler/deploy/deployment.yaml").find((d) => d.kind === "Deployment");
  const spec = deployment?.["spec"] as
    { template: { spec: { containers: { env?: { name: string; value?: string }[] }[] } } } | undefined;
  const value = spec?.template.spec.containers[0]?.env?.find((e) => e.name === "NODE_OPTIONS")?.value;
  if (value === undefined) throw new Error("reconciler/deploy/deployment.yaml: no NODE_OPTIONS on the reconciler");
  return value;
}

export interface StartReconcilerOptions {
  /** Give up waiting for the caches to sync after this long (default 300 s). */
  timeoutMs?: number;
  /** Cap on waiter long-polls held at once (the runner keeps the shipped default, 2,000, unless told). */
  waiterMaxLongPolls?: number;
  /** Called when the waiter API listens — before the caches sync — with its base URL and the process id. */
  onListening?: (url: string, pid: number) => void;
  /** Receives the runner's log lines (JSON), if BENCH_LOG_LEVEL in the environment asks it to log. */
  log?: (line: string) => void;
}

/** Starts the reconciler runner for `namespaces` and resolves once its caches are synced. */
export async function startReconciler(
  bench: BenchCluster,
  namespaces: string[],
  options: StartReconcilerOptions = {},
): Promise<RunningReconciler> {
  const timeoutMs = options.timeoutMs ?? 300_000;
  const env: NodeJS.ProcessEnv = {
    // BENCH_RECONCILER_NODE_OPTIONS adds flags for a look inside (e.g. --heapsnapshot-signal=SIGUSR2).
    NODE_OPTIONS: [shippedNodeOptions(), process.env["BENCH_RECONCILER_NODE_OPTIONS"] ?? ""].join(" ").trim(),
    PATH: process.env["PATH"],
    KUBECONFIG: bench.reconcilerKubeconfig,
    BENCH_NAMESPACES: namespaces.join(","),
  };
  const logLevel = process.env["BENCH_LOG_LEVEL"];
  if (logLevel !== undefined) env["BENCH_LOG_LEVEL"] = logLevel;
  if (options.waiterMaxLongPolls !== undefined) env["BENCH_WAITER_MAX_LONG_POLLS"] = String(options.waiterMaxLongPolls);
  const child = spawn(process.execPath, [bench.runner], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString("utf8")).slice(-4000)));
  let port: number | undefined;
  let syncedMs: number | undefined;
  let syncedAt = 0;
  let peakMemory: NodeJS.MemoryUsage | undefined;
  let buffered = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8");
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let event: { event?: string; port?: number; ms?: number } & Partial<NodeJS.MemoryUsage>;
      try {
        event = JSON.parse(line) as typeof event;
      } catch {
        event = {};
      }
      if (event.event === undefined) options.log?.(line);
      if (event.event === "listening") {
        port = event.port;
        options.onListening?.(`http://127.0.0.1:${port}`, child.pid ?? 0);
      }
      if (event.event === "memory" && (event.rss ?? 0) > (peakMemory?.rss ?? -1)) {
        const { rss = 0, heapTotal = 0, heapUsed = 0, external = 0, arrayBuffers = 0 } = event;
        peakMemory = { rss, heapTotal, heapUsed, external, arrayBuffers };
      }
      if (event.event === "synced") {
        syncedMs = event.ms;
        syncedAt = Date.now();
      }
    }
  });
  let exited: string | undefined;
  child.on("exit", (code, signal) => (exited = `exited (${code ?? signal})`));
  await waitFor(
    () => {
      if (exited !== undefined) throw new Error(`reconciler runner ${exited}: ${stderr}`);
      return syncedMs !== undefined && port !== undefined;
    },
    { what: "the reconciler's caches to sync", timeoutMs, intervalMs: 20, describe: () => stderr },
  );
  return {
    process: child,
    pid: child.pid ?? 0,
    url: `http://127.0.0.1:${port}`,
    syncedMs: syncedMs ?? Number.NaN,
    syncedAt,
    get peakMemory() {
      return peakMemory;
    },
    stop: async () => {
      if (exited !== undefined) return;
      child.kill("SIGTERM");
      await waitFor(() => exited !== undefined, { what: "the reconciler runner to exit", timeoutMs: 30_000 });
    },
  };
}

/** Resident set now and at its peak (kB), and CPU time used so far (ms), from /proc. */
export function processStats(pid: number): { rssKb: number; hwmKb: number; cpuMs: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? Number.NaN);
  // /proc/<pid>/stat: fields after the ")" of the command name; utime and stime are fields 14 and 15.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { rssKb: kb("VmRSS"), hwmKb: kb("VmHWM"), cpuMs: (ticks * 1000) / clockTicks() };
}

let ticksPerSecond: number | undefined;
function clockTicks(): number {
  // USER_HZ is 100 on every Linux architecture Node supports.
  ticksPerSecond ??= 100;
  return ticksPerSecond;
}

export interface AuditEntry {
  verb: string;
  resource: string;
  subresource?: string;
  stage: string;
  /** ms since the epoch */
  at: number;
}

/** The reconciler's requests from the audit log: one entry per request (watches when they started). */
export function readAudit(file: string): AuditEntry[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const out: AuditEntry[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const e = JSON.parse(line) as {
      verb: string;
      stage: string;
      stageTimestamp: string;
      requestReceivedTimestamp: string;
      objectRef?: { resource?: string; subresource?: string };
      user?: { username?: string };
    };
    if (e.user?.username !== RECONCILER_USER) continue;
    // A watch is logged when its response starts and again when it ends: count it once, at the start.
    if (e.verb === "watch" ? e.stage !== "ResponseStarted" : e.stage !== "ResponseComplete" && e.stage !== "Panic") {
      continue;
    }
    const entry: AuditEntry = {
      verb: e.verb,
      resource: e.objectRef?.resource ?? "",
      stage: e.stage,
      at: Date.parse(e.requestReceivedTimestamp),
    };
    if (e.objectRef?.subresource !== undefined) entry.subresource = e.objectRef.subresource;
    out.push(entry);
  }
  return out;
}

export const WRITE_VERBS = new Set(["create", "update", "patch", "delete", "deletecollection"]);

/** Requests between `from` and `to` (ms since the epoch), counted by verb. */
export function countByVerb(entries: readonly AuditEntry[], from: number, to: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (const e of entries) if (e.at >= from && e.at < to) counts.set(e.verb, (counts.get(e.verb) ?? 0) + 1);
  return counts;
}

/** Writes between `from` and `to`, by "verb resource[/subresource]". */
export function writesByTarget(entries: readonly AuditEntry[], from: number, to: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (const e of entries) {
    if (e.at < from || e.at >= to || !WRITE_VERBS.has(e.verb)) continue;
    const key = `${e.verb} ${e.resource}${e.subresource === undefined ? "" : `/${e.subresource}`}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}
