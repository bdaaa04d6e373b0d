// Latency on the real control plane with the node emulator (section latency-emulator): one Migrator,
// and N migrations one after another. Each migration is a bare pod whose gated container is pinned
// to a new digest (so the digest is known from the spec the moment the pod exists) with the waiter
// init container the plugin injects; the node emulator runs the waiter, the migration Job's pod and
// the app as real processes. No probe pod and no pin patch is timed here (the real-node section,
// latency.ts, times them).
//
// Every timestamp is when the benchmark's own watch (one connection per resource) sees the change,
// so all are read on one clock with the same delivery delay:
//   pod created (digest known) → Job created → Job succeeded → Migrator status records the digest →
//   waiter init container terminated (written by the emulator when the waiter process exits).
// Beside the waiter, a 5-second polling waiter (upstream's design: GET the Migrator every 5 s until
// the digest is recorded), started with the pod, is measured in the same run.
import { randomBytes } from "node:crypto";
import {
  ANNOTATIONS,
  API_VERSION,
  KIND,
  PLURAL,
  WAITER_CONTAINER_PREFIX,
  waiterInitContainer,
} from "@digest-migrations/shared";
import type { KubeObject, Migrator, Pod } from "@digest-migrations/shared";
import { inlineNodeImage, waiterImage } from "../harness/images.ts";
import { waitFor } from "../kit/wait.ts";
import { NodeEmulator } from "../emulator/emulator.ts";
import type { WatchEvent } from "../kit/client.ts";
import { Registry } from "../emulator/registry.ts";
import { BENCH_NAMESPACE, startReconciler } from "./control-plane.ts";
import type { BenchCluster } from "./control-plane.ts";
import { summarize } from "./stats.ts";
import { pollLikeUpstream } from "./upstream-poller.ts";
import type { Summary } from "./stats.ts";
import { millis, verdict } from "./table.ts";
import type { Table } from "./table.ts";

export const LATENCY_TARGET_P95_MS = 1000;
const APP_IMAGE = "registry.example/bench-app";
const WAITER_IMAGE = "registry.example/digest-migrations:bench";
const MIGRATOR = "db";

type Job = KubeObject & { status?: { succeeded?: number } };

export interface LatencyOptions {
  migrations: number;
  log: (line: string) => void;
}

interface Marks {
  podSeen?: number;
  jobCreated?: number;
  jobSucceeded?: number;
  statusWritten?: number;
  waiterExited?: number;
  pollerSaw?: number;
}

export interface LatencyResult {
  jobCreated: Summary;
  statusWritten: Summary;
  waiterReleased: Summary;
  succeededToReleased: Summary;
  pollerAfterStatus: Summary;
  pollerSucceededToReleased: Summary;
  endToEnd: Summary;
  tables: Table[];
}

export async function emulatorLatencyBench(bench: BenchCluster, options: LatencyOptions): Promise<LatencyResult> {
  const { kube } = bench;
  const ns = BENCH_NAMESPACE;
  const registry = new Registry();
  registry.push(WAITER_IMAGE.split(":")[0] ?? "", "bench", waiterImage());
  const node = await NodeEmulator.start({
    client: kube,
    registry,
    namespaces: [ns],
    nodes: [`bench-node-${randomBytes(2).toString("hex")}`],
  });
  const reconciler = await startReconciler(bench, [ns]);
  const stop = new AbortController();
  const marks = new Map<string, Marks>(); // digest → marks
  const podDigest = new Map<string, string>(); // pod name → digest
  const mark = (digest: string | undefined, key: keyof Marks): void => {
    if (digest === undefined) return;
    const m = marks.get(digest);
    if (m !== undefined && m[key] === undefined) m[key] = performance.now();
  };
  const watch = <T>(path: string, onEvent: (e: WatchEvent<T>) => void): Promise<void> =>
    kube.watch<T>(path, { allowWatchBookmarks: false }, onEvent, stop.signal).catch((error: unknown) => {
      if (!stop.signal.aborted) options.log(`latency: watch ${path} ended: ${String(error)}`);
    });
  const watches = [
    watch<Pod>(`/api/v1/namespaces/${ns}/pods`, (e) => {
      const digest = podDigest.get(e.object.metadata.name ?? "");
      if (digest === undefined) return;
      mark(digest, "podSeen");
      const waiter = e.object.status?.initContainerStatuses?.find((s) => s.name.startsWith(WAITER_CONTAINER_PREFIX));
      if (waiter?.state?.terminated !== undefined) mark(digest, "waiterExited");
    }),
    watch<Job>(`/apis/batch/v1/namespaces/${ns}/jobs`, (e) => {
      const digest = e.object.metadata.annotations?.[ANNOTATIONS.digest];
      mark(digest, "jobCreated");
      if ((e.object.status?.succeeded ?? 0) > 0) mark(digest, "jobSucceeded");
    }),
    watch<Migrator>(`/apis/${API_VERSION}/namespaces/${ns}/${PLURAL}`, (e) => {
      for (const record of e.object.status?.migratedDigests ?? []) mark(record.digest, "statusWritten");
      mark(e.object.status?.lastSuccessfulMigration, "statusWritten");
    }),
  ];
  try {
    await kube.create(`/apis/${API_VERSION}/namespaces/${ns}/${PLURAL}`, {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name: MIGRATOR, namespace: ns },
      spec: { selector: { matchLabels: { app: "latency" } }, command: ["migrate"] },
    });
    for (let i = 1; i <= options.migrations; i++) {
      if (i % 10 === 0 || i === 1) options.log(`latency: migration ${i}/${options.migrations}`);
      const digest = registry.push(
        APP_IMAGE,
        "latest",
        inlineNodeImage({ migrate: "", serve: "setInterval(() => {}, 1 << 30)" }, { env: { VERSION: String(i) } }),
      );
      const name = `latency-${i}`;
      marks.set(digest, {});
      podDigest.set(name, digest);
      const pod = {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name, namespace: ns, labels: { app: "latency" } },
        spec: {
          terminationGracePeriodSeconds: 0,
          initContainers: [waiterInitContainer(MIGRATOR, "app", { image: WAITER_IMAGE, apiUrl: reconciler.url })],
          containers: [{ name: "app", image: `${APP_IMAGE}:latest@${digest}`, command: ["serve"] }],
        },
      };
      const poller = pollLikeUpstream(
        bench.kube,
        `/apis/${API_VERSION}/namespaces/${BENCH_NAMESPACE}/${PLURAL}/${MIGRATOR}`,
        digest,
        () => mark(digest, "pollerSaw"),
        stop.signal,
      );
      await kube.create(`/api/v1/namespaces/${ns}/pods`, pod);
      await waitFor(() => marks.get(digest)?.waiterExited !== undefined && marks.get(digest)?.pollerSaw !== undefined, {
        what: `migration ${i} (${digest}) to release its waiter`,
        timeoutMs: 120_000,
        intervalMs: 20,
        describe: () => JSON.stringify(marks.get(digest)),
      });
      await poller;
      await kube.delete(`/api/v1/namespaces/${ns}/pods/${name}`, { gracePeriodSeconds: 0 });
    }
  } finally {
    stop.abort();
    await Promise.all(watches);
    await reconciler.stop();
    await node.stop({ deleteNodes: true });
  }
  const all = [...marks.values()];
  const span = (from: keyof Marks, to: keyof Marks): Summary =>
    summarize(all.map((m) => (m[to] ?? Number.NaN) - (m[from] ?? Number.NaN)).filter(Number.isFinite));
  const result = {
    jobCreated: span("podSeen", "jobCreated"),
    statusWritten: span("jobSucceeded", "statusWritten"),
    waiterReleased: span("statusWritten", "waiterExited"),
    succeededToReleased: span("jobSucceeded", "waiterExited"),
    pollerAfterStatus: span("statusWritten", "pollerSaw"),
    pollerSucceededToReleased: span("jobSucceeded", "pollerSaw"),
    endToEnd: span("podSeen", "waiterExited"),
  };
  return { ...result, tables: [latencyTable(result, all.length)] };
}

function latencyTable(r: Omit<LatencyResult, "tables">, n: number): Table {
  const row = (label: string, s: Summary, target: boolean): string[] => [
    label,
    millis(s.median),
    millis(s.p95),
    millis(s.max),
    target ? `≤ ${LATENCY_TARGET_P95_MS} ms` : "–",
    target ? verdict(s.p95 <= LATENCY_TARGET_P95_MS) : "–",
  ];
  return {
    title: `Latency on the real control plane, node emulator, pinned digest (${n} migrations)`,
    columns: ["span", "p50", "p95", "max", "target (p95)", "met"],
    rows: [
      row("digest known (pod created) → Job created", r.jobCreated, true),
      row("Job succeeded → status written", r.statusWritten, false),
      row("status written → waiter exited", r.waiterReleased, false),
      row("Job succeeded → waiter exited (long-poll waiter)", r.succeededToReleased, true),
      row("Job succeeded → 5 s polling waiter sees it (upstream design)", r.pollerSucceededToReleased, true),
      row("status written → 5 s polling waiter sees it", r.pollerAfterStatus, false),
      row("pod created → waiter exited (whole migration)", r.endToEnd, false),
    ],
    notes: [
      "every instant is when the benchmark's own watch saw the change (one clock, the same delivery delay).",
      "waiter exited: the emulated kubelet's status write after the waiter process exited.",
      "whole migration includes the emulated node running the migration Job's pod (a Node process).",
    ],
  };
}
