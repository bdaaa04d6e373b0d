// Scale: M Migrators × P pods on the real control plane with the node emulator (e2e/emulator) as
// the kubelet of a few nodes. The benchmark creates the gated pods — bound round-robin to the
// emulated nodes, the gated container by mutable tag (`<repo>:latest`, as git writes it) and the
// waiter init container the plugin injects — so the reconciler does what a first rollout makes it
// do: a probe pod per Migrator and node to learn the digest the tag resolves to there, a pin patch
// per gated pod (`:latest@sha256:…`), the migration Job, the status. The emulator runs every pod as
// the recorded kubelet 1.20.2 does (shared/src/testdata/kubelet-1.20; checked again here on one
// gated, one pinned and one probe pod): the waiter running and the app waiting in PodInitializing,
// the pin showing in the gated container's status image, the probe's StartError with its imageID,
// the migration Job's pod running to Succeeded. A size marked pinned creates the pods already
// pinned by digest instead (no probe, no pin), as this benchmark did before.
//
// The waiter container's process on the emulated node is a stand-in that sleeps until killed: the
// waiter's requests are played by the benchmark process (long-polls.ts), as one real waiter process
// per pod (~50 MB each) would not fit thousands of pods on one machine. From the moment the
// reconciler's waiter API listens (before its caches sync) each pod holds one long-poll shaped as
// the waiter's, re-polls when answered not ready, and stops once answered ready — so the reconciler
// holds one connection per gated pod for the whole time the pods are gated, as in a cluster.
//
// Measured on the reconciler process (reconciler-runner, its own process): start-up to caches
// synced with everything already there, peak and idle RSS, CPU while idle, and its API requests as
// the apiserver's audit log records them: by verb while idle, LISTs after sync, writes per gated
// pod (its pin) and per migrated digest (the rest) while the M digests are migrated. With the
// long-polls: how many were held at once, peak RSS and CPU while the pods were gated, and per
// Migrator the time from the benchmark's watch seeing its digest recorded to the last of its pods'
// long-polls answering ready.
import {
  API_VERSION,
  KIND,
  LABELS,
  PLURAL,
  PROBE_ROLE,
  WAITER_COMMAND,
  waiterInitContainer,
} from "@digest-migrations/shared";
import type { Migrator, Pod, PodStatus } from "@digest-migrations/shared";
import { errorText, waitFor } from "../kit/wait.ts";
import type { WatchEvent } from "../kit/client.ts";
import { NodeEmulator } from "../emulator/emulator.ts";
import { Registry } from "../emulator/registry.ts";
import type { ImageContent } from "../emulator/registry.ts";
import { readFixtures, summarize as recordedShape } from "../node/kubelet-record.ts";
import {
  countByVerb,
  processStats,
  readAudit,
  shippedNodeOptions,
  startReconciler,
  writesByTarget,
} from "./control-plane.ts";
import type { BenchCluster } from "./control-plane.ts";
import { WAITER_POLL_TIMEOUT_SECONDS, WaiterLongPolls } from "./long-polls.ts";
import type { LongPollTarget, Outcomes } from "./long-polls.ts";
import { linearFit, summarize } from "./stats.ts";
import type { Summary } from "./stats.ts";
import { megabytes, millis, seconds, verdict } from "./table.ts";
import type { Table } from "./table.ts";
import { r2 } from "./render.ts";

export const SCALE_TARGETS = { listsAfterSync: 0, writesPerGatedPod: 2, writesPerDigest: 8, rssMb: 200 } as const;
/** Emulated nodes the gated pods are spread over: a probe per Migrator on each. */
export const SCALE_NODES = 3;
const APP_REPOSITORY = "registry.example/scale";
const WAITER_IMAGE_REPOSITORY = "registry.example/digest-migrations";
/** Every Migrator's image: `migrate` (the migration Job's command) exits 0 at once. */
const APP_IMAGE: ImageContent = { commands: { migrate: ["true"], serve: ["sleep", "infinity"] } };

export interface ScaleSize {
  migrators: number;
  pods: number;
  /** Create the gated pods already pinned by digest (no probe, no pin) instead of by mutable tag. */
  pinned?: boolean;
}

export interface ScaleOptions {
  sizes: ScaleSize[];
  idleSeconds: number;
  log: (line: string) => void;
}

export interface ScaleRun extends ScaleSize {
  syncedMs: number;
  migrateAllMs: number;
  peakRssKb: number;
  idleRssKb: number;
  idleCpuPercent: number;
  idleRequests: Map<string, number>;
  listsAfterSync: number;
  requestsPerDigest: Map<string, number>;
  /** Writes to the gated pods (their pins), per gated pod. */
  writesPerGatedPod: number;
  /** Every other write (probes, Jobs, status, Events), per migrated digest. */
  writesPerDigest: number;
  /** Probe pod creates and deletes per digest and per node. */
  probeWritesPerNode: number;
  /** Probe pods the benchmark's watch saw. */
  probes: number;
  /** Per sampled pod (gated, pinned, probe): whether its emulated status has the shape the kubelet was recorded writing. */
  statuses: Map<Sample, boolean>;
  writeTargets: Map<string, number>;
  /** Most waiter long-polls in flight at once, and how long after the API listened that was first reached. */
  peakHeld: number;
  peakHeldAfterMs: number;
  /** The runner's own memory split at its largest RSS sample (once a second, the whole run). */
  peakMemory: NodeJS.MemoryUsage | undefined;
  /** VmHWM when the last waiter was answered ready: process start → last release, the long-polls held throughout. */
  heldPeakRssKb: number;
  /** CPU from the waiter API listening to the last waiter answered ready, % of one core. */
  gatedCpuPercent: number;
  gatedMs: number;
  /** Per Migrator: digest recorded (benchmark's watch) → the last of its pods answered ready. */
  release: Summary;
  /** Of the pods answered ready, those answered on a long-poll sent before their digest was recorded (held), and after (a re-poll). */
  readyOnHeld: { count: number; ms: Summary };
  readyOnRepoll: { count: number; ms: Summary };
  /** Waiter API requests by outcome, and not-ready answers by reason. */
  outcomes: Outcomes;
  notReadyReasons: Outcomes;
  /** Ready answers naming another digest than the pod's (must be 0). */
  wrongDigest: number;
}

/** Runs `task` over `items` with at most `limit` in flight. */
async function pool<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await task(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** The recordings the emulated statuses are checked against, by what the benchmark samples. */
const RECORDED = {
  gated: "gated-waiting.json",
  pinned: "gated-pinned.json",
  probe: "probe-start-error.json",
} as const;
type Sample = keyof typeof RECORDED;

/**
 * Whether `status` has the shape of the recording `file` (kubelet-record.ts summarize: phase, and
 * per container its state, reason, exit code and the forms of image and imageID), container names aside.
 */
function sameAsRecorded(status: PodStatus, file: string): boolean {
  const fixture = readFixtures()[file];
  if (fixture === undefined) throw new Error(`no kubelet recording ${file}`);
  const shape = (s: PodStatus): string =>
    JSON.stringify(recordedShape({ ...fixture, status: s }), (key, value: unknown) =>
      key === "name" ? undefined : value,
    );
  return shape(status) === shape(fixture.status);
}

/** Watches `path` until `signal` aborts, watching again (a fresh list of ADDED events) whenever a watch ends. */
async function keepWatching<T>(
  kube: BenchCluster["kube"],
  path: string,
  query: Record<string, string | boolean>,
  onEvent: (e: WatchEvent<T>) => void,
  signal: AbortSignal,
  log: (line: string) => void,
): Promise<void> {
  while (!signal.aborted) {
    try {
      await kube.watch<T>(path, { allowWatchBookmarks: false, ...query }, onEvent, signal);
    } catch (error) {
      if (!signal.aborted) log(`scale: watch ${path} ended (${errorText(error)}); watching again`);
    }
  }
}

async function scaleRun(
  bench: BenchCluster,
  size: ScaleSize,
  idleSeconds: number,
  log: (line: string) => void,
): Promise<ScaleRun> {
  const { kube, cluster } = bench;
  const pinned = size.pinned === true;
  const ns = `bench-scale-${size.pods}${pinned ? "-pinned" : ""}`;
  await cluster.ensureNamespace(ns);
  const migrators = Array.from({ length: size.migrators }, (_, i) => `m-${String(i + 1).padStart(4, "0")}`);
  // One repository per Migrator, its `latest` pushed once: the digest every node resolves the tag to.
  const registry = new Registry();
  registry.push(WAITER_IMAGE_REPOSITORY, "bench", {
    commands: { [WAITER_COMMAND]: () => ({ argv: ["sleep", "infinity"] }) },
  });
  const repositoryOf = (m: string): string => `${APP_REPOSITORY}/${m}`;
  const digestOf = new Map(migrators.map((m) => [m, registry.push(repositoryOf(m), "latest", APP_IMAGE)]));
  const nodeNames = Array.from({ length: SCALE_NODES }, (_, i) => `${ns}-node-${i + 1}`);
  log(`scale: ${size.migrators} Migrators, ${size.pods} pods on ${SCALE_NODES} emulated nodes: creating`);
  const emulator = await NodeEmulator.start({
    client: kube,
    registry,
    namespaces: [ns],
    nodes: nodeNames,
    log: (line) => log(`scale: ${line}`),
  });
  const stop = new AbortController();
  // The benchmark's view of the pods: gated pods whose waiter runs, probes, and one status per sample.
  const gatedNames = new Set<string>();
  const waiterRunning = new Set<string>();
  const probes = new Set<string>();
  const samples = new Map<Sample, PodStatus>();
  const podWatch = keepWatching<Pod>(
    kube,
    `/api/v1/namespaces/${ns}/pods`,
    {},
    (e) => {
      const pod = e.object;
      const name = pod.metadata.name ?? "";
      const status = pod.status;
      if (pod.metadata.labels?.[LABELS.role] === PROBE_ROLE) {
        probes.add(name);
        if (status?.phase === "Failed" && !samples.has("probe")) samples.set("probe", status);
        return;
      }
      if (!gatedNames.has(name) || status === undefined || e.type === "DELETED") return;
      if (status.initContainerStatuses?.[0]?.state?.running === undefined) return;
      waiterRunning.add(name);
      const shown = status.containerStatuses?.[0]?.image ?? "";
      const sample: Sample = shown.includes("@sha256:") ? "pinned" : "gated";
      if (!samples.has(sample)) samples.set(sample, status);
    },
    stop.signal,
    log,
  );
  const stopEarly = async (): Promise<void> => {
    stop.abort();
    await Promise.all([podWatch, emulator.stop()]);
  };
  await pool(migrators, 16, async (name) => {
    await kube.create(`/apis/${API_VERSION}/namespaces/${ns}/${PLURAL}`, {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name, namespace: ns },
      spec: { selector: { matchLabels: { app: name } }, command: ["migrate"] },
    });
  }).catch(async (error: unknown) => {
    await stopEarly();
    throw error;
  });
  const pods = Array.from({ length: size.pods }, (_, i) => {
    const migrator = migrators[i % migrators.length] ?? "";
    return {
      name: `${migrator}-pod-${String(Math.floor(i / migrators.length)).padStart(4, "0")}`,
      migrator,
      node: nodeNames[i % nodeNames.length] ?? "",
    };
  });
  for (const p of pods) gatedNames.add(p.name);
  const targets: LongPollTarget[] = [];
  try {
    await pool(pods, 32, async ({ name, migrator, node }) => {
      const tag = `${repositoryOf(migrator)}:latest`;
      const waiter = waiterInitContainer(migrator, "app", {
        image: `${WAITER_IMAGE_REPOSITORY}:bench`,
        apiUrl: "http://127.0.0.1:1",
      });
      // The pods' waiter URL is a placeholder (the emulated waiter only sleeps): the benchmark plays
      // every waiter itself against the runner's waiter API, whose port is known only once it listens.
      const created = await kube.create<Pod>(`/api/v1/namespaces/${ns}/pods`, {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name, namespace: ns, labels: { app: migrator } },
        spec: {
          nodeName: node,
          terminationGracePeriodSeconds: 0,
          initContainers: [waiter],
          containers: [{ name: "app", image: pinned ? `${tag}@${digestOf.get(migrator)}` : tag, command: ["serve"] }],
        },
      });
      targets.push({ namespace: ns, pod: name, podUID: created.metadata.uid ?? "", migrator, container: "app" });
    });
    // Gated as a node reports it before the reconciler starts: every waiter running.
    await waitFor(() => waiterRunning.size === size.pods, {
      what: `${size.pods} gated pods' waiters to run on the emulated nodes`,
      timeoutMs: 900_000,
      intervalMs: 200,
      describe: () => `${waiterRunning.size} of ${size.pods} waiters running`,
    });
  } catch (error) {
    await stopEarly();
    throw error;
  }

  // When the benchmark's own watch first sees each Migrator's digest recorded.
  const recordedAt = new Map<string, number>();
  const migratorWatch = keepWatching<Migrator>(
    kube,
    `/apis/${API_VERSION}/namespaces/${ns}/${PLURAL}`,
    {},
    (e) => {
      const name = e.object.metadata.name ?? "";
      if (recordedAt.has(name) || e.object.status?.lastSuccessfulMigration !== digestOf.get(name)) return;
      recordedAt.set(name, Date.now());
    },
    stop.signal,
    log,
  );

  // Every gated pod's waiter, from the moment the waiter API listens until the pod is answered ready.
  let polls: WaiterLongPolls | undefined;
  let listening: { at: number; cpuMs: number } | undefined;
  let lastReady: { at: number; hwmKb: number; cpuMs: number } | undefined;
  let pid = 0;
  const onReady = (): void => {
    if (polls?.done !== true || lastReady !== undefined) return;
    // The instant the last waiter is answered: the process's peak so far covers the gated window.
    const at = Date.now();
    try {
      const stats = processStats(pid);
      lastReady = { at, hwmKb: stats.hwmKb, cpuMs: stats.cpuMs };
    } catch (error) {
      log(`scale: reading /proc/${pid} failed: ${errorText(error)}`);
      lastReady = { at, hwmKb: Number.NaN, cpuMs: Number.NaN };
    }
  };
  log(`scale: ${size.migrators} Migrators, ${size.pods} pods: starting the reconciler and ${size.pods} waiters`);
  const stopAll = async (): Promise<void> => {
    stop.abort();
    await Promise.all([podWatch, migratorWatch, polls?.stop()]);
    // Every emulated process ends with the emulator (its nodes go too; the pod GC removes their pods).
    await emulator.stop();
  };
  const reconciler = await startReconciler(bench, [ns], {
    // One long-poll per gated pod, above the shipped cap of 2,000 at 5,000 pods (see the table notes).
    waiterMaxLongPolls: Math.max(size.pods, 2000),
    log: (line) => log(`scale: reconciler: ${line}`),
    onListening: (url, childPid) => {
      pid = childPid;
      try {
        listening = { at: Date.now(), cpuMs: processStats(childPid).cpuMs };
      } catch (error) {
        log(`scale: reading /proc/${childPid} failed: ${errorText(error)}`);
      }
      polls = new WaiterLongPolls(url, targets, { onReady });
      polls.start((t) => digestOf.get(t.migrator));
    },
  }).catch(async (error: unknown) => {
    await stopAll();
    throw error;
  });
  try {
    await waitFor(() => recordedAt.size === size.migrators && polls?.done === true && lastReady !== undefined, {
      what: `${size.migrators} Migrators to record their digests and ${size.pods} waiters to be answered ready`,
      timeoutMs: 900_000,
      intervalMs: 100,
      describe: () => {
        const outcomes = verbs(polls?.outcomes ?? new Map<string, number>());
        return (
          `${recordedAt.size} of ${size.migrators} digests recorded, ${polls?.readyAt.size ?? 0} of ${size.pods} ` +
          `waiters answered ready, ${polls?.held ?? 0} long-polls held; waiter requests: ${outcomes}`
        );
      },
    });
    const migrated = Math.max(...recordedAt.values());
    const longPolls = polls as WaiterLongPolls;
    // Every pod released: its waiter would have exited, so no waiter connection stays open while idle.
    await longPolls.stop();
    // Let trailing writes of the migration phase (conditions, events) land before the idle window.
    const settle = 5_000;
    await new Promise((resolve) => setTimeout(resolve, settle));
    const idleFrom = Date.now();
    const cpu0 = processStats(reconciler.pid);
    log(`scale: ${size.migrators} Migrators, ${size.pods} pods: idle for ${idleSeconds} s`);
    await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000));
    const idleTo = Date.now();
    const cpu1 = processStats(reconciler.pid);
    // Audit entries are written when a request completes; give the log a moment to catch up.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const audit = readAudit(bench.auditLog);
    const released = lastReady as { at: number; hwmKb: number; cpuMs: number };
    // The migration phase: caches synced → every digest recorded and every pod released (pinned first).
    const phaseEnd = Math.max(migrated, released.at) + settle;
    const perDigest = countByVerb(audit, reconciler.syncedAt, phaseEnd);
    for (const [verb, n] of perDigest) perDigest.set(verb, n / size.migrators);
    const writeTargets = writesByTarget(audit, reconciler.syncedAt, phaseEnd);
    const writes = [...writeTargets.values()].reduce((sum, n) => sum + n, 0);
    // The reconciler patches a pod only to pin it; it creates and deletes pods only as probes.
    const pins = writeTargets.get("patch pods") ?? 0;
    const probeWrites = (writeTargets.get("create pods") ?? 0) + (writeTargets.get("delete pods") ?? 0);
    const statuses = new Map<Sample, boolean>();
    for (const [sample, status] of samples) statuses.set(sample, sameAsRecorded(status, RECORDED[sample]));
    const releaseMs = migrators.map((m) => {
      const ready = targets.filter((t) => t.migrator === m).map((t) => longPolls.readyAt.get(t.pod) ?? Number.NaN);
      return Math.max(...ready) - (recordedAt.get(m) ?? Number.NaN);
    });
    const onHeld: number[] = [];
    const onRepoll: number[] = [];
    for (const t of targets) {
      const recorded = recordedAt.get(t.migrator) ?? Number.NaN;
      const span = (longPolls.readyAt.get(t.pod) ?? Number.NaN) - recorded;
      ((longPolls.readySentAt.get(t.pod) ?? Number.NaN) <= recorded ? onHeld : onRepoll).push(span);
    }
    const gatedFrom = listening ?? { at: Number.NaN, cpuMs: Number.NaN };
    const run: ScaleRun = {
      ...size,
      syncedMs: reconciler.syncedMs,
      migrateAllMs: migrated - reconciler.syncedAt,
      peakRssKb: cpu1.hwmKb,
      idleRssKb: cpu1.rssKb,
      idleCpuPercent: ((cpu1.cpuMs - cpu0.cpuMs) / (idleTo - idleFrom)) * 100,
      idleRequests: countByVerb(audit, idleFrom, idleTo),
      listsAfterSync: audit.filter((e) => e.verb === "list" && e.at > reconciler.syncedAt).length,
      requestsPerDigest: perDigest,
      writesPerGatedPod: pins / size.pods,
      writesPerDigest: (writes - pins) / size.migrators,
      probeWritesPerNode: probeWrites / size.migrators / SCALE_NODES,
      probes: probes.size,
      statuses,
      writeTargets,
      peakMemory: reconciler.peakMemory,
      peakHeld: longPolls.peak.held,
      peakHeldAfterMs: longPolls.peak.msAfterStart,
      heldPeakRssKb: released.hwmKb,
      gatedCpuPercent: ((released.cpuMs - gatedFrom.cpuMs) / (released.at - gatedFrom.at)) * 100,
      gatedMs: released.at - gatedFrom.at,
      release: summarize(releaseMs),
      readyOnHeld: { count: onHeld.length, ms: summarize(onHeld) },
      readyOnRepoll: { count: onRepoll.length, ms: summarize(onRepoll) },
      outcomes: longPolls.outcomes,
      notReadyReasons: longPolls.notReadyReasons,
      wrongDigest: longPolls.wrongDigest,
    };
    return run;
  } finally {
    // Stop every poll still running (a failed run) and close every socket before the reconciler goes.
    await stopAll().finally(() => reconciler.stop());
    // Free the apiserver for the next size: the namespace controller removes the objects.
    await kube.delete(`/api/v1/namespaces/${ns}`);
  }
}

function p50p95max(s: Summary): string {
  return s.n === 0 ? "–" : `${millis(s.median)} / ${millis(s.p95)} / ${millis(s.max)}`;
}

function verbs(counts: Map<string, number>, digits = 0): string {
  if (counts.size === 0) return "none";
  return [...counts]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([verb, n]) => `${verb} ${n.toFixed(digits)}`)
    .join(", ");
}

export async function scaleBench(
  bench: BenchCluster,
  options: ScaleOptions,
): Promise<{ runs: ScaleRun[]; tables: Table[]; growth: string[][] }> {
  const runs: ScaleRun[] = [];
  for (const size of options.sizes) runs.push(await scaleRun(bench, size, options.idleSeconds, options.log));
  const table: Table = {
    title: "Scale (reconciler process on the real control plane, gated pods on emulated nodes)",
    columns: [
      "figure",
      ...runs.map(
        (r) => `${r.migrators} Migrators × ${r.pods} pods, ${r.pinned === true ? "pre-pinned" : "mutable tag"}`,
      ),
      "target",
      "met",
    ],
    rows: [],
    notes: [
      `pods: spread round-robin over ${SCALE_NODES} nodes of the node emulator (e2e/emulator), which runs them as ` +
        "the recorded kubelet 1.20.2 does. Mutable tag: the gated container is `<repo>:latest` (one repository " +
        "per Migrator), so the reconciler creates a probe pod per Migrator and node and pins every gated pod; " +
        "pre-pinned: created as `<repo>:latest@sha256:…`, no probe and no pin. The migration Jobs' pods run " +
        "on the emulated nodes to Succeeded. The waiter container's process there sleeps until killed (the " +
        "benchmark plays the waiter's requests).",
      "requests counted by the apiserver's audit log (only the reconciler's ServiceAccount is audited). The " +
        "waiters' long-polls go to the reconciler's own waiter API, not to the apiserver, so they are not in " +
        "the audit log and not in any request count here; the benchmark's own requests (pods, its watches) use " +
        "admin credentials and are not counted either.",
      `waiters: the benchmark plays every gated pod's waiter (${WAITER_POLL_TIMEOUT_SECONDS} s long-polls shaped ` +
        "as reconciler/src/waiter.ts sends them, over one keep-alive node:http Agent with a socket per pod), " +
        "from the waiter API listening (before the caches sync) until the pod is answered ready; a not-ready " +
        "answer is re-polled at once, or after ~1 s if it came back within a second, errors and 429s with the " +
        "waiter's backoff. After the last release every waiter socket is closed, so the idle window holds none.",
      "long-polls held: requests in flight at once, counted by the benchmark (sent, not yet answered).",
      "RSS windows: peak RSS (VmHWM) is the whole process life, start-up to the end of the idle window (it " +
        "includes the long-polls); peak RSS with the long-polls held is VmHWM read the moment the last waiter " +
        "is answered ready (start-up → last release; the long-polls are held from the API listening, before " +
        "the caches sync, until then); RSS while idle is VmRSS at the end of the idle window, no waiter connected.",
      "CPU while the pods are gated: the reconciler's CPU time from its waiter API listening to the last waiter " +
        "answered ready, over that wall time — it includes the caches' sync and the migrations, not only the " +
        "long-polls. CPU while idle: the idle window, no waiter connected.",
      "start-up to caches synced now includes answering the waiters' first long-polls, which arrive during the " +
        "sync (as in a cluster where gated pods' waiters are retrying when the reconciler starts).",
      "digest recorded → waiters answered: per Migrator, from the benchmark's watch seeing " +
        "status.lastSuccessfulMigration set to its digest to the last of its pods' long-polls answering ready " +
        "(a waiter can be answered before the benchmark's watch delivers the status, so a span can be " +
        "negative); synced → every digest recorded is now taken from the same watch (before: a LIST every 500 ms).",
      "the runner raises the waiter API's per-address rate limit (burst and rate 100,000; shipped: burst 20, " +
        "5/s) because every waiter here connects from 127.0.0.1, where in a cluster each pod has its own " +
        "address; and its cap on long-polls held at once to the pod count when that is above the shipped " +
        "default of 2,000 per replica (--waiter-max-long-polls), so every gated pod can be held.",
      "writes: every create/update/patch/delete from caches synced until every digest was recorded and every " +
        "waiter answered ready (+5 s). Per gated pod: the writes to gated pods (pod patches: the pin), over the " +
        "pods; per migrated digest: every other write (probe pods created and deleted, the Job, status updates, " +
        "Events), over the Migrators (one digest each).",
      "the runner is the Controller and the waiter API without leader election: a replica also renews its " +
        "Lease (one update per renew period), not counted here.",
      `the runner's Node flags are the shipped Deployment's: NODE_OPTIONS="${shippedNodeOptions()}".`,
    ],
  };
  // Targets are checked at the largest mutable-tag size (the product's main path), fits over those sizes.
  const tagRuns = runs.filter((r) => r.pinned !== true);
  const fitted = tagRuns.length > 0 ? tagRuns : runs;
  const last = fitted[fitted.length - 1];
  const met = (ok: boolean | undefined): string => (ok === undefined ? "–" : verdict(ok));
  const row = (label: string, cell: (r: ScaleRun) => string, target: string, ok?: boolean): void => {
    table.rows.push([label, ...runs.map(cell), target, met(ok)]);
  };
  /** An RSS figure checked against the target at the largest size. */
  const rssRow = (label: string, kb: (r: ScaleRun) => number): void => {
    row(label, (r) => megabytes(kb(r)), `≤ ${SCALE_TARGETS.rssMb} MB`, last && kb(last) / 1024 <= SCALE_TARGETS.rssMb);
  };
  row("start-up to caches synced", (r) => millis(r.syncedMs), "–");
  row("synced → every digest recorded", (r) => seconds(r.migrateAllMs), "–");
  rssRow("peak RSS (VmHWM)", (r) => r.peakRssKb);
  rssRow("RSS while idle", (r) => r.idleRssKb);
  row(
    "at the largest RSS sample: V8 heap used / heap total / external (of RSS)",
    (r) => {
      const m = r.peakMemory;
      if (m === undefined) return "–";
      const mb = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MB`;
      return `${mb(m.heapUsed)} / ${mb(m.heapTotal)} / ${mb(m.external)} (of ${mb(m.rss)})`;
    },
    "–",
  );
  row("CPU while idle (% of one core)", (r) => `${r.idleCpuPercent.toFixed(2)} %`, "–");
  row("waiter long-polls held (peak)", (r) => `${r.peakHeld} of ${r.pods} pods`, "–");
  rssRow("peak RSS with the long-polls held (VmHWM, start-up → last waiter answered)", (r) => r.heldPeakRssKb);
  row(
    "CPU while the pods are gated (% of one core, API listening → last waiter answered)",
    (r) => `${r.gatedCpuPercent.toFixed(1)} % over ${seconds(r.gatedMs)}`,
    "–",
  );
  row("digest recorded → every waiter of that Migrator answered ready: p50/p95/max", (r) => p50p95max(r.release), "–");
  row("waiter API requests, by answer", (r) => verbs(r.outcomes), "–");
  row(`requests while idle (${options.idleSeconds} s), by verb`, (r) => verbs(r.idleRequests), "–");
  row("LIST requests after sync", (r) => String(r.listsAfterSync), "0", last && last.listsAfterSync === 0);
  row("requests per migrated digest, by verb (all requests)", (r) => verbs(r.requestsPerDigest, 2), "–");
  row(
    "writes per gated pod (its pin)",
    (r) => r.writesPerGatedPod.toFixed(2),
    `≤ ${SCALE_TARGETS.writesPerGatedPod}`,
    last && last.writesPerGatedPod <= SCALE_TARGETS.writesPerGatedPod,
  );
  row(
    "writes per migrated digest (all but the pins)",
    (r) => r.writesPerDigest.toFixed(2),
    `≤ ${SCALE_TARGETS.writesPerDigest}`,
    last && last.writesPerDigest <= SCALE_TARGETS.writesPerDigest,
  );
  row(
    "of which probe pod writes, per digest and node",
    (r) => `${r.probeWritesPerNode.toFixed(2)} (${r.probes} probes seen)`,
    "–",
  );
  row(
    "emulated statuses vs the kubelet 1.20.2 recordings",
    (r) =>
      (Object.keys(RECORDED) as Sample[])
        .map(
          (k) => `${RECORDED[k]} ${r.statuses.has(k) ? (r.statuses.get(k) === true ? "same" : "DIFFERS") : "not seen"}`,
        )
        .join(", "),
    "same",
    last && [...last.statuses.values()].every((same) => same),
  );
  if (last) {
    table.notes.push(
      `waiters at ${last.migrators} × ${last.pods}: the peak of ${last.peakHeld} long-polls in flight was first ` +
        `reached ${millis(last.peakHeldAfterMs)} after the waiter API listened; not-ready answers by reason: ` +
        `${verbs(last.notReadyReasons)}; ready answers naming another digest than the pod's: ${last.wrongDigest}. ` +
        `Pods answered ready on a long-poll held since before the watch saw the digest: ${last.readyOnHeld.count} ` +
        `(digest recorded → answered p50/p95/max ${p50p95max(last.readyOnHeld.ms)}); on a re-poll sent after it ` +
        `(the waiter was between polls, e.g. in its 1 s pause after an early not-ready answer): ` +
        `${last.readyOnRepoll.count} (${p50p95max(last.readyOnRepoll.ms)}).`,
    );
    table.notes.push(
      `writes at ${last.migrators} × ${last.pods}, by target: ${[...last.writeTargets]
        .map(([k, n]) => `${k} ${(n / last.migrators).toFixed(2)}`)
        .join(", ")} (per digest).`,
    );
  }
  const growth: string[][] = [];
  const fit = (label: string, value: (r: ScaleRun) => number, unit: (v: number) => string): void => {
    const f = linearFit(fitted.map((r) => [r.pods / 1000, value(r)] as const));
    growth.push([label, `${unit(f.slope)} per 1,000 pods`, unit(f.intercept), r2(f.r2)]);
  };
  if (fitted.length >= 2) {
    fit(
      "reconciler start-up to synced",
      (r) => r.syncedMs,
      (v) => millis(v),
    );
    fit(
      "reconciler peak RSS",
      (r) => r.peakRssKb,
      (v) => `${(v / 1024).toFixed(1)} MB`,
    );
    fit(
      "reconciler peak RSS, long-polls held",
      (r) => r.heldPeakRssKb,
      (v) => `${(v / 1024).toFixed(1)} MB`,
    );
    fit(
      "reconciler idle RSS",
      (r) => r.idleRssKb,
      (v) => `${(v / 1024).toFixed(1)} MB`,
    );
    fit(
      "reconciler CPU while idle",
      (r) => r.idleCpuPercent,
      (v) => `${v.toFixed(3)} %`,
    );
  }
  growth.push([
    "writes",
    `one pin per gated pod (mutable tag); per digest a probe created and deleted on each node it lands on, the Job, status updates, Events`,
    "–",
    "–",
  ]);
  return { runs, tables: [table], growth };
}
