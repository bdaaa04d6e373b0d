// Scale: M Migrators × P pods on the real control plane, no node processes. The benchmark creates
// the pods itself — bound to a node name, gated container pinned to its Migrator's digest, the
// waiter init container — and writes their status as a kubelet would for a gated pod (waiter
// running, app waiting). It also plays the kubelet for migration Jobs' pods (status Succeeded), so
// the Job controller completes the Jobs and the reconciler records every digest.
//
// Every gated pod's waiter is played by the benchmark process (long-polls.ts): from the moment the
// reconciler's waiter API listens (before its caches sync) each pod holds one long-poll shaped as the
// waiter's, re-polls when answered not ready, and stops once answered ready — so the reconciler
// holds one connection per gated pod for the whole time the pods are gated, as in a cluster.
//
// Measured on the reconciler process (reconciler-runner, its own process): start-up to caches
// synced with everything already there, peak and idle RSS, CPU while idle, and its API requests as
// the apiserver's audit log records them: by verb while idle, LISTs after sync, and writes per
// migrated digest while the M digests are migrated. With the long-polls: how many were held at
// once, peak RSS and CPU while the pods were gated, and per Migrator the time from the benchmark's
// watch seeing its digest recorded to the last of its pods' long-polls answering ready.
import { createHash } from "node:crypto";
import { API_VERSION, KIND, LABELS, PLURAL, waiterInitContainer } from "@digest-migrations/shared";
import type { Migrator, Pod } from "@digest-migrations/shared";
import { errorText, waitFor } from "../kit/wait.ts";
import { MERGE_PATCH } from "../kit/client.ts";
import type { WatchEvent } from "../kit/client.ts";
import {
  WRITE_VERBS,
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

export const SCALE_TARGETS = { listsAfterSync: 0, writesPerDigest: 8, rssMb: 200 } as const;
const APP_IMAGE = "registry.example/scale-app";

export interface ScaleSize {
  migrators: number;
  pods: number;
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
  writesPerDigest: number;
  writeTargets: Map<string, number>;
  /** Most waiter long-polls in flight at once, and how long after the API listened that was first reached. */
  peakHeld: number;
  peakHeldAfterMs: number;
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

function fakeDigest(seed: string): string {
  return `sha256:${createHash("sha256").update(seed).digest("hex")}`;
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

async function scaleRun(
  bench: BenchCluster,
  size: ScaleSize,
  idleSeconds: number,
  log: (line: string) => void,
): Promise<ScaleRun> {
  const { kube, cluster } = bench;
  const ns = `bench-scale-${size.pods}`;
  await cluster.ensureNamespace(ns);
  const migrators = Array.from({ length: size.migrators }, (_, i) => `m-${String(i + 1).padStart(4, "0")}`);
  const digestOf = new Map(migrators.map((m) => [m, fakeDigest(`${ns}/${m}`)]));
  log(`scale: ${size.migrators} Migrators, ${size.pods} pods: creating`);
  await pool(migrators, 16, async (name) => {
    await kube.create(`/apis/${API_VERSION}/namespaces/${ns}/${PLURAL}`, {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name, namespace: ns },
      spec: { selector: { matchLabels: { app: name } }, command: ["migrate"] },
    });
  });
  const pods = Array.from({ length: size.pods }, (_, i) => {
    const migrator = migrators[i % migrators.length] ?? "";
    return { name: `${migrator}-pod-${String(Math.floor(i / migrators.length)).padStart(4, "0")}`, migrator };
  });
  const now = new Date().toISOString();
  const targets: LongPollTarget[] = [];
  await pool(pods, 32, async ({ name, migrator }) => {
    const image = `${APP_IMAGE}:latest@${digestOf.get(migrator)}`;
    const waiter = waiterInitContainer(migrator, "app", {
      image: "registry.example/digest-migrations:bench",
      apiUrl: "http://127.0.0.1:1",
    });
    // The pods' waiter URL is a placeholder (nothing runs the init container): the benchmark
    // plays every waiter itself against the runner's waiter API, whose port is known only once it listens.
    const created = await kube.create<Pod>(`/api/v1/namespaces/${ns}/pods`, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace: ns, labels: { app: migrator } },
      spec: { nodeName: "scale-node", initContainers: [waiter], containers: [{ name: "app", image }] },
    });
    targets.push({ namespace: ns, pod: name, podUID: created.metadata.uid ?? "", migrator, container: "app" });
    // A gated pod as the kubelet reports it: the waiter running, the app container not started.
    await kube.request("PATCH", `/api/v1/namespaces/${ns}/pods/${name}/status`, {
      contentType: MERGE_PATCH,
      body: {
        status: {
          phase: "Pending",
          initContainerStatuses: [
            {
              name: waiter.name,
              image: waiter.image,
              imageID: "",
              ready: false,
              restartCount: 0,
              state: { running: { startedAt: now } },
            },
          ],
          containerStatuses: [
            {
              name: "app",
              image,
              imageID: "",
              ready: false,
              restartCount: 0,
              state: { waiting: { reason: "PodInitializing" } },
            },
          ],
        },
      },
    });
  });

  // The kubelet for migration Jobs' pods: each one succeeds at once.
  const stop = new AbortController();
  const completed = new Set<string>();
  const completer = kube
    .watch<Pod>(
      `/api/v1/namespaces/${ns}/pods`,
      { labelSelector: `${LABELS.role}=migration` },
      (e: WatchEvent<Pod>) => {
        const name = e.object.metadata.name ?? "";
        if (e.type !== "ADDED" || completed.has(name)) return;
        completed.add(name);
        const at = new Date().toISOString();
        void kube
          .request("PATCH", `/api/v1/namespaces/${ns}/pods/${name}/status`, {
            contentType: MERGE_PATCH,
            body: {
              status: {
                phase: "Succeeded",
                containerStatuses: e.object.spec.containers.map((c) => ({
                  name: c.name,
                  image: c.image,
                  imageID: `docker-pullable://${c.image}`,
                  ready: false,
                  restartCount: 0,
                  state: { terminated: { exitCode: 0, reason: "Completed", startedAt: at, finishedAt: at } },
                })),
              },
            },
          })
          .catch((error: unknown) => log(`scale: completing ${name} failed: ${String(error)}`));
      },
      stop.signal,
    )
    .catch((error: unknown) => {
      if (!stop.signal.aborted) log(`scale: Job pod watch ended: ${String(error)}`);
    });

  // When the benchmark's own watch first sees each Migrator's digest recorded.
  const recordedAt = new Map<string, number>();
  const migratorWatch = (async () => {
    while (!stop.signal.aborted) {
      try {
        await kube.watch<Migrator>(
          `/apis/${API_VERSION}/namespaces/${ns}/${PLURAL}`,
          { allowWatchBookmarks: false },
          (e: WatchEvent<Migrator>) => {
            const name = e.object.metadata.name ?? "";
            if (recordedAt.has(name) || e.object.status?.lastSuccessfulMigration !== digestOf.get(name)) return;
            recordedAt.set(name, Date.now());
          },
          stop.signal,
        );
      } catch (error) {
        if (!stop.signal.aborted) log(`scale: Migrator watch ended (${errorText(error)}); watching again`);
      }
    }
  })();

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
  const stopEarly = async (): Promise<void> => {
    stop.abort();
    await Promise.all([completer, migratorWatch, polls?.stop()]);
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
    await stopEarly();
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
    const perDigest = countByVerb(audit, reconciler.syncedAt, migrated + settle);
    for (const [verb, n] of perDigest) perDigest.set(verb, n / size.migrators);
    const writes = [...perDigest].filter(([verb]) => WRITE_VERBS.has(verb)).reduce((s, [, n]) => s + n, 0);
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
    const released = lastReady as { at: number; hwmKb: number; cpuMs: number };
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
      writesPerDigest: writes,
      writeTargets: writesByTarget(audit, reconciler.syncedAt, migrated + settle),
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
    stop.abort();
    await completer;
    await migratorWatch;
    // Stop every poll still running (a failed run) and close every socket before the reconciler goes.
    await polls?.stop();
    await reconciler.stop();
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
    title: "Scale (reconciler process on the real control plane)",
    columns: ["figure", ...runs.map((r) => `${r.migrators} Migrators × ${r.pods} pods`), "target", "met"],
    rows: [],
    notes: [
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
      "writes per digest: every create/update/patch/delete from caches synced until every digest was recorded " +
        "(+5 s), divided by the number of Migrators (one digest each).",
      "the runner is the Controller and the waiter API without leader election: a replica also renews its " +
        "Lease (one update per renew period), not counted here.",
      `the runner's Node flags are the shipped Deployment's: NODE_OPTIONS="${shippedNodeOptions()}".`,
    ],
  };
  const last = runs[runs.length - 1];
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
  row("requests per migrated digest, by verb", (r) => verbs(r.requestsPerDigest, 2), "–");
  row(
    "writes per migrated digest",
    (r) => r.writesPerDigest.toFixed(2),
    `≤ ${SCALE_TARGETS.writesPerDigest}`,
    last && last.writesPerDigest <= SCALE_TARGETS.writesPerDigest,
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
    const f = linearFit(runs.map((r) => [r.pods / 1000, value(r)] as const));
    growth.push([label, `${unit(f.slope)} per 1,000 pods`, unit(f.intercept), r2(f.r2)]);
  };
  if (runs.length >= 2) {
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
  growth.push(["writes per migrated digest", "constant by design (per digest, not per pod)", "–", "–"]);
  return { runs, tables: [table], growth };
}
