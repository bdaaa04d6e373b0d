// Latency on the real node (section latency): the world's kubelet 1.20.2 and containerd (e2e/world/),
// the reconciler installed by its Helm chart in a namespace of its own (as the e2e tests install it),
// and migrations one after another on a mutable tag. Before each migration a new build is pushed to
// `app:latest` (a new digest); then a bare pod is created naming only the tag (`imagePullPolicy:
// Always`, as an app on `:latest` has) with the waiter init container the plugin injects, so the
// reconciler must learn the digest from a probe pod on the node, pin the pod, run the migration Job
// (a `migrate` that returns at once) and release the waiter.
//
// Every instant is when the benchmark's own watches (pods, Jobs, Migrators, Events of the namespace;
// one connection each, one process clock) see the change:
//   pod created → scheduled → probe created → probe Pulling → Pulled → probe's imageID → pin patch →
//   Job created → Job succeeded → Migrator status records the digest → waiter terminated → app running.
// Beside each migration, a 5-second polling waiter (upstream's design: GET the Migrator every 5 s from
// the pod's creation until the digest is recorded) is measured in the same run; and after it, a
// PreSync-hook-style flow on a new push of the same tag: a migration Job (the tag, pulled Always)
// applied and awaited, then the pod applied (no waiter), until its app container runs.
import { randomBytes } from "node:crypto";
import { setTimeout } from "node:timers/promises";
import {
  ANNOTATIONS,
  API_VERSION,
  KIND,
  LABELS,
  PLURAL,
  PROBE_ROLE,
  WAITER_CONTAINER_PREFIX,
  migratedDigests,
  pinnedDigest,
  waiterInitContainer,
} from "@digest-migrations/shared";
import type { Container, ContainerStatus, KubeObject, Migrator, Pod, PodSpec } from "@digest-migrations/shared";
import type { KubeClient, WatchEvent } from "../kit/client.ts";
import { waitFor } from "../kit/wait.ts";
import type { AppImageSpec } from "../world/app-images.ts";
import { openNodeEnv } from "../world/namespace.ts";
import type { OwnedNodeEnv } from "../world/namespace.ts";
import { ReconcilerRelease } from "../world/reconciler-release.ts";
import { summarize } from "./stats.ts";
import { pollLikeUpstream } from "./upstream-poller.ts";
import type { Summary } from "./stats.ts";
import { millis, verdict } from "./table.ts";
import type { Table } from "./table.ts";

/** p95 of pod created → waiter released, the migration Job and the probe's image pull left out. */
export const RELEASE_TARGET_P95_MS = 2000;
const MIGRATOR = "db";
const REPOSITORY = "app";
const TAG = "latest";
const APP = "e2e/bench/fixtures/latency-app.ts";
const ROUND_TIMEOUT_MS = 180_000;

export interface NodeLatencyOptions {
  migrations: number;
  log: (line: string) => void;
}

/** What one watch saw first, by key, on the benchmark's clock (performance.now()). */
export type Sightings = ReadonlyMap<string, number>;

/** One migration through the reconciler (gated pod) and one through the PreSync-style flow. */
export interface Round {
  /** the gated pod's uid and its digest */
  gated: { uid: string; digest: string; start: number; end: number };
  presync: { job: string; podUid: string; digest: string; start: number };
}

/** Keys of what the watches record (pure, so the spans can be computed from any record). */
export const seen = {
  pod: (
    uid: string,
    what:
      | "created"
      | "scheduled"
      | "pinned"
      | "pinReported"
      | "imageID"
      | "released"
      | "running"
      | "initRunning"
      | "ephemeral"
      | "ephemeralImageID",
  ) => `pod/${uid}/${what}`,
  event: (uid: string, container: string, reason: string) => `event/${uid}/${container}/${reason}`,
  job: (id: string, what: "created" | "succeeded") => `job/${id}/${what}`,
  recorded: (digest: string) => `recorded/${digest}`,
  poller: (digest: string) => `poller/${digest}`,
  probe: (uid: string) => `probe/${uid}`,
};

export const APP_SPEC: AppImageSpec = { commands: { migrate: APP, serve: APP } };

export async function nodeLatencyBench(options: NodeLatencyOptions): Promise<{ tables: Table[] }> {
  return inBenchNamespace("bench-latency", options.log, async (env, sightings, probes) => {
    const release = await ReconcilerRelease.install(env.world, env.kube, env.namespace, {
      replicas: 1,
      logLevel: "info",
    });
    await env.kube.create(`/apis/${API_VERSION}/namespaces/${env.namespace}/${PLURAL}`, {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name: MIGRATOR, namespace: env.namespace },
      spec: { selector: { matchLabels: { app: "gated" } }, command: ["migrate"] },
    });
    const rounds: Round[] = [];
    // One uncounted round first: the first pull of the base layers, the bundles' build.
    for (let i = 0; i <= options.migrations; i++) {
      if (i % 5 === 0) options.log(`latency: round ${i}/${options.migrations}${i === 0 ? " (warm-up)" : ""}`);
      const gated = await gatedRound(env, release, i, sightings);
      const presync = await presyncRound(env, i, sightings);
      if (i > 0) rounds.push({ gated, presync });
    }
    return { tables: latencyTables(rounds, sightings, probes) };
  });
}

/**
 * Runs `body` in a namespace of its own on the real node — in the world DM_WORLD names (or a kept
 * one), else in one started here and stopped at the end (e2e/world/connect.ts) — with the namespace's
 * watches recording what they see (`sightings`, and probe pods by uid → first seen).
 */
export async function inBenchNamespace<T>(
  prefix: string,
  log: (line: string) => void,
  body: (env: OwnedNodeEnv, sightings: Map<string, number>, probes: Map<string, number>) => Promise<T>,
): Promise<T> {
  const cleanups: (() => Promise<void>)[] = [];
  const env = await openNodeEnv(`${prefix}-${randomBytes(3).toString("hex")}`, { postgres: false }, (fn) =>
    cleanups.push(fn),
  );
  const stop = new AbortController();
  const sightings = new Map<string, number>();
  const probes = new Map<string, number>();
  const watches = watchNamespace(env.kube, env.namespace, sightings, probes, stop.signal, log);
  try {
    log(`${prefix}: namespace ${env.namespace}, reconciler image ${env.world.images.reconciler}`);
    return await body(env, sightings, probes);
  } finally {
    stop.abort();
    await Promise.all(watches);
    try {
      await env.close();
    } finally {
      for (const fn of cleanups.reverse()) await fn();
    }
  }
}

/** One watch per resource of the namespace; each sighting is stamped the moment its event arrives. */
export function watchNamespace(
  kube: KubeClient,
  ns: string,
  sightings: Map<string, number>,
  probes: Map<string, number>,
  signal: AbortSignal,
  log: (line: string) => void,
): Promise<void>[] {
  const mark = (key: string): void => {
    if (!sightings.has(key)) sightings.set(key, performance.now());
  };
  // Each watch runs until `signal`: one that ends (the API server's timeout, or a resource the
  // reconciler's chart has not installed yet: a 404) is opened again after a short pause.
  const watch = async <T>(path: string, onEvent: (e: WatchEvent<T>) => void): Promise<void> => {
    let reported = "";
    while (!signal.aborted) {
      try {
        await kube.watch<T>(path, { allowWatchBookmarks: false }, onEvent, signal);
      } catch (error) {
        if (signal.aborted) return;
        if (String(error) !== reported)
          log(`latency: watch ${path} ended, opened again: ${(reported = String(error))}`);
      }
      await setTimeout(200, undefined, { signal }).catch(() => undefined);
    }
  };
  type Job = KubeObject & { status?: { succeeded?: number } };
  type Event = KubeObject & { reason?: string; involvedObject?: { uid?: string; fieldPath?: string } };
  return [
    watch<Pod>(`/api/v1/namespaces/${ns}/pods`, ({ object: pod }) => {
      const uid = pod.metadata.uid ?? "";
      if (pod.metadata.labels?.[LABELS.role] === PROBE_ROLE && !probes.has(uid)) probes.set(uid, performance.now());
      mark(seen.pod(uid, "created"));
      if (pod.spec.nodeName) mark(seen.pod(uid, "scheduled"));
      if (pinnedDigest(pod.spec.containers.find((c) => c.name === "app")?.image) !== undefined) {
        mark(seen.pod(uid, "pinned"));
      }
      if (pod.status?.containerStatuses?.some((s) => (s.imageID ?? "") !== "")) mark(seen.pod(uid, "imageID"));
      // The kubelet has the pinned spec: its status names the pinned reference (what the release waits for).
      if (pinnedDigest(pod.status?.containerStatuses?.find((c) => c.name === "app")?.image) !== undefined) {
        mark(seen.pod(uid, "pinReported"));
      }
      if (pod.status?.initContainerStatuses?.some((s) => s.state?.running !== undefined)) {
        mark(seen.pod(uid, "initRunning"));
      }
      // probe-cost's ephemeral-container way (fields alpha in 1.20, not in the shared Pod type)
      const ephemeral = pod as {
        spec: { ephemeralContainers?: unknown[] };
        status?: { ephemeralContainerStatuses?: ContainerStatus[] };
      };
      if ((ephemeral.spec.ephemeralContainers ?? []).length > 0) mark(seen.pod(uid, "ephemeral"));
      if (ephemeral.status?.ephemeralContainerStatuses?.some((s) => (s.imageID ?? "") !== "")) {
        mark(seen.pod(uid, "ephemeralImageID"));
      }
      const waiter = pod.status?.initContainerStatuses?.find((s) => s.name.startsWith(WAITER_CONTAINER_PREFIX));
      if (waiter?.state?.terminated !== undefined) mark(seen.pod(uid, "released"));
      if (pod.status?.containerStatuses?.some((s) => s.name === "app" && s.state?.running !== undefined)) {
        mark(seen.pod(uid, "running"));
      }
    }),
    watch<Job>(`/apis/batch/v1/namespaces/${ns}/jobs`, ({ object: job }) => {
      // The reconciler's Jobs by the digest they migrate, the PreSync-style ones by name.
      const id = job.metadata.annotations?.[ANNOTATIONS.digest] ?? job.metadata.name ?? "";
      mark(seen.job(id, "created"));
      if ((job.status?.succeeded ?? 0) > 0) mark(seen.job(id, "succeeded"));
    }),
    watch<Migrator>(`/apis/${API_VERSION}/namespaces/${ns}/${PLURAL}`, ({ object: m }) => {
      for (const digest of migratedDigests(m.status)) mark(seen.recorded(digest));
    }),
    watch<Event>(`/api/v1/namespaces/${ns}/events`, ({ object: e }) => {
      const container = /\{(.*)\}/.exec(e.involvedObject?.fieldPath ?? "")?.[1] ?? "";
      mark(seen.event(e.involvedObject?.uid ?? "", container, e.reason ?? ""));
    }),
  ];
}

/** The gated pod of round `i`: a tag only, pulled Always, the injected waiter; until its app runs. */
async function gatedRound(
  env: OwnedNodeEnv,
  release: ReconcilerRelease,
  i: number,
  sightings: Map<string, number>,
): Promise<Round["gated"]> {
  const { digest } = await env.images.push(REPOSITORY, TAG, APP_SPEC);
  await noPodsLeft(env);
  const name = `gated-${i}`;
  const spec: PodSpec = {
    ...hostPodSpec(),
    initContainers: [
      waiterInitContainer(MIGRATOR, "app", { image: env.world.images.reconciler, apiUrl: release.waiterUrl }),
    ],
    containers: [appContainer(env, "serve")],
  };
  const start = performance.now();
  const pod = await env.kube.create<Pod>(`/api/v1/namespaces/${env.namespace}/pods`, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: env.namespace, labels: { app: "gated" } },
    spec,
  });
  const uid = pod.metadata.uid ?? "";
  // Upstream's design beside it: from the pod's creation, the Migrator read every 5 s.
  const poller = pollLikeUpstream(
    env.kube,
    `/apis/${API_VERSION}/namespaces/${env.namespace}/${PLURAL}/${MIGRATOR}`,
    digest,
    () => sightings.set(seen.poller(digest), performance.now()),
    AbortSignal.timeout(ROUND_TIMEOUT_MS),
  );
  await waitFor(() => sightings.has(seen.pod(uid, "running")) && sightings.has(seen.recorded(digest)), {
    what: `round ${i}: gated pod ${name} (${digest}) to run its app`,
    timeoutMs: ROUND_TIMEOUT_MS,
    intervalMs: 50,
    describe: () => describePod(env, name),
  });
  await poller;
  const end = performance.now();
  await env.kube.delete(`/api/v1/namespaces/${env.namespace}/pods/${name}`, { gracePeriodSeconds: 0 });
  return { uid, digest, start, end };
}

/** Round `i` the PreSync-hook way: the Job of a new push applied and awaited, then the pod applied. */
async function presyncRound(env: OwnedNodeEnv, i: number, sightings: Sightings): Promise<Round["presync"]> {
  const { digest } = await env.images.push(REPOSITORY, TAG, APP_SPEC);
  await noPodsLeft(env);
  const job = `presync-${i}`;
  const name = `presync-app-${i}`;
  const start = performance.now();
  await env.kube.create(`/apis/batch/v1/namespaces/${env.namespace}/jobs`, {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name: job, namespace: env.namespace },
    spec: {
      backoffLimit: 0,
      template: {
        metadata: { labels: { app: "presync-job" } },
        spec: { ...hostPodSpec(), restartPolicy: "Never", containers: [appContainer(env, "migrate")] },
      },
    },
  });
  await waitFor(() => sightings.has(seen.job(job, "succeeded")), {
    what: `round ${i}: PreSync-style Job ${job} to succeed`,
    timeoutMs: ROUND_TIMEOUT_MS,
    intervalMs: 20,
  });
  const pod = await env.kube.create<Pod>(`/api/v1/namespaces/${env.namespace}/pods`, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: env.namespace, labels: { app: "presync" } },
    spec: { ...hostPodSpec(), containers: [appContainer(env, "serve")] },
  });
  const podUid = pod.metadata.uid ?? "";
  await waitFor(() => sightings.has(seen.pod(podUid, "running")), {
    what: `round ${i}: pod ${name} to run its app`,
    timeoutMs: ROUND_TIMEOUT_MS,
    intervalMs: 20,
    describe: () => describePod(env, name),
  });
  await env.kube.delete(`/apis/batch/v1/namespaces/${env.namespace}/jobs/${job}`, {
    propagationPolicy: "Background",
  });
  await env.kube.delete(`/api/v1/namespaces/${env.namespace}/pods/${name}`, { gracePeriodSeconds: 0 });
  return { job, podUid, digest, start };
}

/** The node's network (the waiter API listens on 127.0.0.1), no grace period. */
function hostPodSpec(): Omit<PodSpec, "containers"> {
  return { hostNetwork: true, dnsPolicy: "ClusterFirstWithHostNet", terminationGracePeriodSeconds: 0 };
}

function appContainer(env: OwnedNodeEnv, command: string): Container {
  return { name: "app", image: env.images.ref(REPOSITORY, TAG), imagePullPolicy: "Always", command: [command] };
}

/** Waits until the previous round's pods are gone: no application, probe or Job pod runs into the next. */
export async function noPodsLeft(env: OwnedNodeEnv): Promise<void> {
  await waitFor(
    async () => {
      const pods = await env.kube.get<{ items: Pod[] }>(`/api/v1/namespaces/${env.namespace}/pods`);
      // The reconciler's own pods stay; a finished migration pod runs nothing.
      return pods.items.every(
        (p) => p.metadata.labels?.["app.kubernetes.io/instance"] !== undefined || p.status?.phase === "Succeeded",
      );
    },
    { what: "the previous round's pods to be gone", timeoutMs: 90_000, intervalMs: 100 },
  );
}

async function describePod(env: OwnedNodeEnv, name: string): Promise<string> {
  const pod = await env.kube.find<Pod>(`/api/v1/namespaces/${env.namespace}/pods/${name}`);
  const m = await env.kube.find<Migrator>(`/apis/${API_VERSION}/namespaces/${env.namespace}/${PLURAL}/${MIGRATOR}`);
  return `pod ${JSON.stringify(pod?.status)}; migrator ${JSON.stringify(m?.status)}`;
}

interface Spans {
  label: string;
  values: number[];
  target?: number;
}

/** The probe the reconciler created during a round: the first probe pod seen in its window. */
function probeOf(round: Round["gated"], probes: ReadonlyMap<string, number>): string | undefined {
  let found: [string, number] | undefined;
  for (const [uid, at] of probes) {
    if (at >= round.start && at <= round.end && (found === undefined || at < found[1])) found = [uid, at];
  }
  return found?.[0];
}

/** The tables of the rounds' sightings (pure: bench.test.ts feeds it a made-up record). */
export function latencyTables(rounds: readonly Round[], s: Sightings, probes: ReadonlyMap<string, number>): Table[] {
  const at = (key: string | undefined): number => (key === undefined ? Number.NaN : (s.get(key) ?? Number.NaN));
  const span = (label: string, of: (r: Round) => number, target?: number): Spans => ({
    label,
    values: rounds.map(of).filter(Number.isFinite),
    ...(target === undefined ? {} : { target }),
  });
  const g = (r: Round) => {
    const uid = r.gated.uid;
    const probe = probeOf(r.gated, probes);
    return {
      created: at(seen.pod(uid, "created")),
      scheduled: at(seen.pod(uid, "scheduled")),
      probeCreated: probe === undefined ? Number.NaN : at(seen.pod(probe, "created")),
      probePulling: probe === undefined ? Number.NaN : at(seen.event(probe, "probe", "Pulling")),
      probePulled: probe === undefined ? Number.NaN : at(seen.event(probe, "probe", "Pulled")),
      probeImageID: probe === undefined ? Number.NaN : at(seen.pod(probe, "imageID")),
      pinned: at(seen.pod(uid, "pinned")),
      pinReported: at(seen.pod(uid, "pinReported")),
      jobCreated: at(seen.job(r.gated.digest, "created")),
      jobSucceeded: at(seen.job(r.gated.digest, "succeeded")),
      recorded: at(seen.recorded(r.gated.digest)),
      released: at(seen.pod(uid, "released")),
      appPulling: at(seen.event(uid, "app", "Pulling")),
      appPulled: at(seen.event(uid, "app", "Pulled")),
      running: at(seen.pod(uid, "running")),
      poller: at(seen.poller(r.gated.digest)),
    };
  };
  const p = (r: Round) => ({
    start: r.presync.start,
    jobCreated: at(seen.job(r.presync.job, "created")),
    jobSucceeded: at(seen.job(r.presync.job, "succeeded")),
    podCreated: at(seen.pod(r.presync.podUid, "created")),
    running: at(seen.pod(r.presync.podUid, "running")),
  });
  // What the reconciler's path costs beyond the migration and the image pull (the target's figure).
  const ownPath = (r: Round): number => {
    const m = g(r);
    const pull = Number.isFinite(m.probePulled - m.probePulling) ? m.probePulled - m.probePulling : 0;
    return m.released - m.created - (m.jobSucceeded - m.jobCreated) - pull;
  };
  const gated: Spans[] = [
    span("pod created → scheduled (bound to the node)", (r) => g(r).scheduled - g(r).created),
    span("pod created → probe created", (r) => g(r).probeCreated - g(r).created),
    span("probe created → probe Pulling (kubelet: sandbox, network)", (r) => g(r).probePulling - g(r).probeCreated),
    span("probe Pulling → Pulled (image pull)", (r) => g(r).probePulled - g(r).probePulling),
    span("probe Pulled → probe's imageID seen", (r) => g(r).probeImageID - g(r).probePulled),
    span("probe's imageID seen → pin patch seen", (r) => g(r).pinned - g(r).probeImageID),
    span("pin patch → Job created", (r) => g(r).jobCreated - g(r).pinned),
    span("pin patch → the kubelet reports it (gated container's status image)", (r) => g(r).pinReported - g(r).pinned),
    span("Job created → Job succeeded (the migration's pod and run)", (r) => g(r).jobSucceeded - g(r).jobCreated),
    span("Job succeeded → Migrator status records the digest", (r) => g(r).recorded - g(r).jobSucceeded),
    span("status recorded → waiter released (init container terminated)", (r) => g(r).released - g(r).recorded),
    span(
      "later of status recorded and pin reported → waiter released",
      (r) => g(r).released - Math.max(g(r).recorded, g(r).pinReported),
    ),
    span("waiter released → app container running", (r) => g(r).running - g(r).released),
    span("of which the app's pull (Pulling → Pulled, policy Always)", (r) => g(r).appPulled - g(r).appPulling),
    span("pod created → waiter released", (r) => g(r).released - g(r).created),
    span("pod created → waiter released, less the Job and the probe's pull", ownPath, RELEASE_TARGET_P95_MS),
    span("pod created → app container running", (r) => g(r).running - g(r).created),
    span("status recorded → 5 s polling waiter sees it (upstream design)", (r) => g(r).poller - g(r).recorded),
    span("pod created → 5 s polling waiter sees it", (r) => g(r).poller - g(r).created),
  ];
  const presync: Spans[] = [
    span("start → Job created", (r) => p(r).jobCreated - p(r).start),
    span("Job created → Job succeeded (the migration's pod and run)", (r) => p(r).jobSucceeded - p(r).jobCreated),
    span("Job succeeded → pod created", (r) => p(r).podCreated - p(r).jobSucceeded),
    span("pod created → app container running", (r) => p(r).running - p(r).podCreated),
    span("start → app container running (whole flow)", (r) => p(r).running - p(r).start),
  ];
  const table = (title: string, rows: Spans[], notes: string[]): Table => ({
    title,
    columns: ["span", "n", "p50", "p95", "max", "target (p95)", "met"],
    rows: rows.map((row) => {
      const sum: Summary = summarize(row.values);
      return [
        row.label,
        String(sum.n),
        millis(sum.median),
        millis(sum.p95),
        millis(sum.max),
        row.target === undefined ? "–" : `≤ ${row.target} ms`,
        row.target === undefined || sum.n === 0 ? "–" : verdict(sum.p95 <= row.target),
      ];
    }),
    notes,
  });
  return [
    table(`Latency on the real node, mutable tag (${rounds.length} migrations)`, gated, [
      "real node (kubelet 1.20.2, containerd), the reconciler installed by its Helm chart (one replica); each migration a new push of app:latest and a bare pod naming only the tag (imagePullPolicy Always) with the injected waiter; the migration command returns at once.",
      "every instant is when the benchmark's own watch (pods, Jobs, Migrators, Events) saw the change: one clock, the same delivery delay; Pulling and Pulled are the kubelet's Events.",
      "the 5 s polling waiter runs beside each migration (GET the Migrator every 5 s from the pod's creation).",
      "an n below the run count: a step the watch did not see (e.g. no Pulling Event when the image was present).",
    ]),
    table(`PreSync-hook-style flow on the real node, mutable tag (${rounds.length} migrations)`, presync, [
      "a new push of app:latest, then a Job running migrate (the tag, pulled Always) applied and awaited, then a pod (no waiter) applied; the same watches and clock as above.",
    ]),
  ];
}
