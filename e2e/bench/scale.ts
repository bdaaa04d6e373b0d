// Scale: M Migrators × P pods on the real control plane, no node processes. The benchmark creates
// the pods itself — bound to a node name, gated container pinned to its Migrator's digest, the
// waiter init container — and writes their status as a kubelet would for a gated pod (waiter
// running, app waiting). It also plays the kubelet for migration Jobs' pods (status Succeeded), so
// the Job controller completes the Jobs and the reconciler records every digest.
//
// Measured on the reconciler process (reconciler-runner, its own process): start-up to caches
// synced with everything already there, peak and idle RSS, CPU while idle, and its API requests as
// the apiserver's audit log records them: by verb while idle, LISTs after sync, and writes per
// migrated digest while the M digests are migrated.
import { createHash } from "node:crypto";
import { API_VERSION, KIND, LABELS, PLURAL, waiterInitContainer } from "@digest-migrations/shared";
import type { Migrator, Pod } from "@digest-migrations/shared";
import { waitFor } from "../harness/wait.ts";
import { MERGE_PATCH } from "../node/kube.ts";
import type { ObjectList, WatchEvent } from "../node/kube.ts";
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
import { linearFit } from "./stats.ts";
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
  await pool(pods, 32, async ({ name, migrator }) => {
    const image = `${APP_IMAGE}:latest@${digestOf.get(migrator)}`;
    const waiter = waiterInitContainer(migrator, "app", {
      image: "registry.example/digest-migrations:bench",
      apiUrl: "http://127.0.0.1:1",
    });
    await kube.create(`/api/v1/namespaces/${ns}/pods`, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace: ns, labels: { app: migrator } },
      spec: { nodeName: "scale-node", initContainers: [waiter], containers: [{ name: "app", image }] },
    });
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

  log(`scale: ${size.migrators} Migrators, ${size.pods} pods: starting the reconciler`);
  const reconciler = await startReconciler(bench, [ns]);
  try {
    const migrated = await waitFor(
      async () => {
        const list = await kube.get<ObjectList<Migrator>>(`/apis/${API_VERSION}/namespaces/${ns}/${PLURAL}`);
        const done = list.items.filter(
          (m) => m.status?.lastSuccessfulMigration === digestOf.get(m.metadata.name ?? ""),
        );
        return done.length === size.migrators ? Date.now() : undefined;
      },
      {
        what: `${size.migrators} Migrators to record their digests`,
        timeoutMs: 900_000,
        intervalMs: 500,
        describe: async () => {
          const list = await kube.get<ObjectList<Migrator>>(`/apis/${API_VERSION}/namespaces/${ns}/${PLURAL}`);
          const pending = list.items.filter((m) => m.status?.lastSuccessfulMigration === undefined);
          return `${pending.length} pending, e.g. ${JSON.stringify(pending[0]?.status)}`;
        },
      },
    );
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
    };
    return run;
  } finally {
    stop.abort();
    await completer;
    await reconciler.stop();
    // Free the apiserver for the next size: the namespace controller removes the objects.
    await kube.delete(`/api/v1/namespaces/${ns}`);
  }
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
      "requests counted by the apiserver's audit log (only the reconciler's ServiceAccount is audited).",
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
  row("start-up to caches synced", (r) => millis(r.syncedMs), "–");
  row("synced → every digest recorded", (r) => seconds(r.migrateAllMs), "–");
  row(
    "peak RSS (VmHWM)",
    (r) => megabytes(r.peakRssKb),
    `≤ ${SCALE_TARGETS.rssMb} MB`,
    last && last.peakRssKb / 1024 <= SCALE_TARGETS.rssMb,
  );
  row(
    "RSS while idle",
    (r) => megabytes(r.idleRssKb),
    `≤ ${SCALE_TARGETS.rssMb} MB`,
    last && last.idleRssKb / 1024 <= SCALE_TARGETS.rssMb,
  );
  row("CPU while idle (% of one core)", (r) => `${r.idleCpuPercent.toFixed(2)} %`, "–");
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
