// Shared set-up of the reconciler's end-to-end tests on the real node: the reconciler installed with
// its Helm chart into the test's namespace (e2e/world/reconciler-release.ts) and observed from
// outside only — the API (Migrators, pods, Jobs, Events), the node's runtime (containerd's
// starts), PostgreSQL and its /metrics over HTTP — and the test application: real images built from
// e2e/reconciler/fixtures/app.ts, pods on the host network (PostgreSQL and the waiter API listen on
// 127.0.0.1) with the test's host directory mounted for the files a test flips (hold, fail).
import path from "node:path";
import type { Test } from "tap";
import {
  ANNOTATIONS,
  API_VERSION,
  CONDITION_READY,
  KIND,
  PLURAL,
  waiterInitContainer,
} from "@digest-migrations/shared";
import type { Container, KubeObject, Migrator, MigratorSpec, Pod, PodSpec } from "@digest-migrations/shared";
import { deployment } from "../harness/objects.ts";
import type { ObjectList } from "../kit/client.ts";
import { Recorder } from "../kit/reflector.ts";
import { delay, waitFor } from "../kit/wait.ts";
import type { AppImageSpec } from "../world/app-images.ts";
import { nodeEnv } from "../world/env.ts";
import { deleteNamespace } from "../world/namespace.ts";
import type { NodeEnv, NodeEnvOptions } from "../world/env.ts";
import { ReconcilerRelease } from "../world/reconciler-release.ts";
import type { ReleaseOptions } from "../world/reconciler-release.ts";

const APP = "e2e/reconciler/fixtures/app.ts";
/** The application's repository (under the test's prefix in the node's registry). */
export const APP_REPOSITORY = "app";
/** The volume of the test's host directory in the app's pods (and so in its migration Jobs). */
const FLAGS_VOLUME = "flags";
/** Patched on a Migrator to make the reconciler visit it (any change of a Migrator does). */
const REVISIT_ANNOTATION = "e2e.digest-migrations/revisit";

/** The test application's image: `migrate` and `serve` commands, APP_VERSION (and `env`) in ENV. */
export function appImage(version: string, env: Record<string, string> = {}): AppImageSpec {
  return { commands: { migrate: APP, serve: APP }, env: { APP_VERSION: version, ...env } };
}

export interface ReconcilerEnvOptions extends NodeEnvOptions {
  /** The chart install (default one replica: the tests read its counters). */
  release?: ReleaseOptions;
  /** Runs in the test's namespace before the reconciler is installed. */
  prepare?: (env: NodeEnv) => Promise<void>;
  /**
   * Installs the reconciler into a namespace of its own, `<namespace>-dm`, watching the test's namespace
   * (default: into the test's namespace itself).
   */
  ownReleaseNamespace?: boolean;
}

export interface ReconcilerEnv extends NodeEnv {
  release: ReconcilerRelease;
  /** Builds `spec` and pushes it as <APP_REPOSITORY or name>:tag; returns the new digest. */
  push(spec: AppImageSpec, tag?: string, name?: string): Promise<string>;
  /** `<registry>/<namespace>/<name>:<tag>`. */
  ref(tag?: string, name?: string): string;
  /** A path in the test's host directory, the same inside the app's pods. */
  flag(name: string): string;
  /** A waiter init container (the reconciler's image) for `migrator` gating container `container`. */
  waiter(migrator: string, container?: string): Container;
  migrator(name: string, spec: MigratorSpec, annotations?: Record<string, string>): Promise<Migrator>;
  getMigrator(name: string): Promise<Migrator | undefined>;
  pods(labelSelector: string): Promise<Pod[]>;
  jobs(): Promise<KubeObject[]>;
  /** Rows of the `applied` table (one per migration run). */
  applied(): Promise<{ version: string; digest: string }[]>;
  events(reason?: string): Promise<KubeObject[]>;
  /** Waits for at least one Event with this reason on a Migrator (written just after the status). */
  waitEvents(reason: string, timeoutMs?: number): Promise<KubeObject[]>;
  waitReady(name: string, digest: string, timeoutMs?: number): Promise<Migrator>;
  waitReason(name: string, reason: string, timeoutMs?: number): Promise<Migrator>;
}

export async function reconcilerEnv(t: Test, opts: ReconcilerEnvOptions = {}): Promise<ReconcilerEnv> {
  const env = await nodeEnv(t, opts);
  await opts.prepare?.(env);
  let releaseNamespace = env.namespace;
  if (opts.ownReleaseNamespace) {
    releaseNamespace = `${env.namespace}-dm`;
    await env.cluster.ensureNamespace(releaseNamespace);
    t.teardown(() => deleteNamespace(env.kube, releaseNamespace));
  }
  const release = await ReconcilerRelease.install(env.world, env.kube, releaseNamespace, {
    replicas: 1,
    ...opts.release,
    values: { watchNamespaces: [env.namespace], ...opts.release?.values },
  });
  // Teardowns run last-registered first: this one before the namespace (and the reconciler's log) is gone.
  t.teardown(async () => {
    if (process.env.DM_E2E_VERBOSE) console.error(await release.logs().catch(() => ""));
    const restarts = await release.restarts();
    if (restarts.length > 0) throw new Error(`the reconciler in ${env.namespace} restarted: ${restarts.join("; ")}`);
  });
  const migratorPath = `/apis/${API_VERSION}/namespaces/${env.namespace}/${PLURAL}`;
  const self: ReconcilerEnv = {
    ...env,
    release,
    async push(spec, tag = "latest", name = APP_REPOSITORY) {
      return (await env.images.push(name, tag, spec)).digest;
    },
    ref: (tag = "latest", name = APP_REPOSITORY) => env.images.ref(name, tag),
    flag: (name) => path.join(env.hostDir, name),
    waiter: (migrator, container = "app") =>
      waiterInitContainer(migrator, container, { image: env.world.images.reconciler, apiUrl: release.waiterUrl }),
    async migrator(name, spec, annotations = {}) {
      return env.kube.create<Migrator>(migratorPath, {
        apiVersion: API_VERSION,
        kind: KIND,
        metadata: { name, namespace: env.namespace, annotations },
        spec,
      });
    },
    getMigrator: (name) => env.kube.find<Migrator>(`${migratorPath}/${name}`),
    async pods(labelSelector) {
      const list = await env.kube.request<ObjectList<Pod>>("GET", `/api/v1/namespaces/${env.namespace}/pods`, {
        query: { labelSelector },
      });
      return list.items;
    },
    async jobs() {
      return (await env.kube.get<ObjectList<KubeObject>>(`/apis/batch/v1/namespaces/${env.namespace}/jobs`)).items;
    },
    async applied() {
      if (env.database === undefined) throw new Error(`test ${t.name} has no database`);
      const exists = await env.postgres.query<{ t: string | null }>(
        env.database.name,
        "select to_regclass('applied') as t",
      );
      if (exists[0]?.t === null) return [];
      return env.postgres.query<{ version: string; digest: string }>(
        env.database.name,
        "select version, digest from applied order by at",
      );
    },
    async events(reason) {
      const list = await env.kube.get<ObjectList<KubeObject & { reason?: string }>>(
        `/api/v1/namespaces/${env.namespace}/events`,
      );
      return list.items.filter(
        (e) => (e.involvedObject as { kind?: string }).kind === KIND && (reason === undefined || e.reason === reason),
      );
    },
    async waitEvents(reason, timeoutMs = 15_000) {
      return waitFor(
        async () => {
          const events = await self.events(reason);
          return events.length > 0 ? events : undefined;
        },
        { what: `an Event ${reason} on a Migrator in ${env.namespace}`, timeoutMs },
      );
    },
    async waitReady(name, digest, timeoutMs = 120_000) {
      return waitFor(
        async () => {
          const m = await self.getMigrator(name);
          const ready = m?.status?.conditions?.find((c) => c.type === CONDITION_READY);
          return m?.status?.migratedDigests?.some((r) => r.digest === digest) && ready?.status === "True"
            ? m
            : undefined;
        },
        { what: `Migrator ${name} to record ${digest}`, timeoutMs, describe: () => describeMigrator(self, name) },
      );
    },
    async waitReason(name, reason, timeoutMs = 120_000) {
      return waitFor(
        async () => {
          const m = await self.getMigrator(name);
          return m?.status?.conditions?.find((c) => c.type === CONDITION_READY)?.reason === reason ? m : undefined;
        },
        { what: `Migrator ${name} to say ${reason}`, timeoutMs, describe: () => describeMigrator(self, name) },
      );
    },
  };
  return self;
}

export async function describeMigrator(env: ReconcilerEnv, name: string): Promise<string> {
  const m = await env.getMigrator(name);
  const pods = await env.pods("");
  const podText = pods
    .map(
      (p) =>
        `${p.metadata.name}[${p.status?.phase}] ${p.spec.containers.map((c) => c.image).join(",")} ` +
        `init=${JSON.stringify((p.status?.initContainerStatuses ?? []).map((s) => s.state))} ` +
        `app=${JSON.stringify((p.status?.containerStatuses ?? []).map((s) => [s.imageID, s.state]))}`,
    )
    .join("\n  ");
  return `status=${JSON.stringify(m?.status)}\n  ${podText}`;
}

/**
 * The application container: `serve` of the app image, DATABASE_URL of the test database, the
 * test's host directory mounted at its own path (where FAIL_FILE and HOLD_FILE point).
 */
export function appContainer(env: ReconcilerEnv, image = env.ref()): Container {
  return {
    name: "app",
    image,
    command: ["serve"],
    env: [
      { name: "DATABASE_URL", value: env.database?.url ?? "" },
      {
        name: "MIGRATION_DIGEST",
        valueFrom: { fieldRef: { fieldPath: `metadata.annotations['${ANNOTATIONS.digest}']` } },
      },
    ],
    volumeMounts: [{ name: FLAGS_VOLUME, mountPath: env.hostDir }],
  };
}

/**
 * A pod spec of the test application on the real node: the host's network namespace (PostgreSQL,
 * the waiter API and the API server listen on 127.0.0.1 there) and the host directory as a volume.
 * The reconciler clones it into the migration Job, so the Job's pod has both too.
 */
export function appPodSpec(env: ReconcilerEnv, spec: PodSpec): PodSpec {
  return {
    hostNetwork: true,
    dnsPolicy: "ClusterFirstWithHostNet",
    terminationGracePeriodSeconds: 5,
    ...spec,
    volumes: [
      ...((spec["volumes"] as unknown[] | undefined) ?? []),
      { name: FLAGS_VOLUME, hostPath: { path: env.hostDir, type: "Directory" } },
    ],
  };
}

/** A Deployment `name` (pods labelled app=<name>) of `container`, gated by Migrator `migrator`. */
export function appDeployment(
  env: ReconcilerEnv,
  name: string,
  opts: { migrator?: string; replicas?: number; container?: Container; labels?: Record<string, string> } = {},
): KubeObject {
  const d = deployment(env.namespace, name, [opts.container ?? appContainer(env)], {
    replicas: opts.replicas ?? 1,
    ...(opts.migrator === undefined ? {} : { initContainers: [env.waiter(opts.migrator)] }),
    ...(opts.labels === undefined ? {} : { labels: opts.labels }),
  });
  const template = (d.spec as { template: { spec: PodSpec } }).template;
  template.spec = appPodSpec(env, template.spec);
  return d;
}

/** The running app pods' gated container images, of pods past their waiter. */
export function runningImages(pods: Pod[]): string[] {
  return pods
    .filter((p) => p.metadata.deletionTimestamp === undefined && p.status?.phase === "Running")
    .flatMap((p) =>
      (p.status?.containerStatuses ?? []).filter((s) => s.name === "app" && s.state?.running).map((s) => s.imageID),
    );
}

/**
 * What containerd says about the app containers it started for pods named `<prefix>…`, as
 * sentences (empty = as promised): each ran an image whose repository digest is one of `migrated`.
 */
export async function unmigratedStarts(env: ReconcilerEnv, prefix: string, migrated: string[]): Promise<string[]> {
  await env.starts.settled();
  const problems = [...env.starts.errors];
  for (const s of env.starts.starts) {
    if (s.container !== "app" || !s.pod.startsWith(prefix)) continue;
    const digests = s.repoDigests.map((d) => d.slice(d.lastIndexOf("@") + 1));
    if (!digests.some((d) => migrated.includes(d)))
      problems.push(
        `containerd started app in pod ${s.pod} from image ${s.imageId} (${digests.join(", ") || "no repository digest"}), not a migrated digest`,
      );
  }
  return problems;
}

/** One sample of the Prometheus text format. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text exposition format (comments skipped). */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null) throw new Error(`not a Prometheus sample: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    const pairs = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (let l = pairs.exec(m[2] ?? ""); l !== null; l = pairs.exec(m[2] ?? "")) {
      labels[l[1] ?? ""] = (l[2] ?? "").replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: m[1] ?? "", labels, value: Number(m[3]) });
  }
  return samples;
}

/** The sum of the samples `name` whose labels include `labels`, from the one reconciler's /metrics. */
export async function metric(env: ReconcilerEnv, name: string, labels: Record<string, string> = {}): Promise<number> {
  const pods = await env.release.pods();
  if (pods.length !== 1)
    throw new Error(`${name}: counting needs exactly one reconciler replica, ${env.namespace} has ${pods.length}`);
  return parseMetrics(await env.release.metrics())
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

/** Migration Jobs the reconciler created for `migrator` (digest_migrations_migrations_started_total). */
export function jobsStarted(env: ReconcilerEnv, migrator = "db"): Promise<number> {
  return metric(env, "digest_migrations_migrations_started_total", { namespace: env.namespace, migrator });
}

/** Reconciles the reconciler has run so far (every result), from digest_migrations_reconcile_duration_seconds. */
export function reconcileCount(env: ReconcilerEnv): Promise<number> {
  return metric(env, "digest_migrations_reconcile_duration_seconds_count");
}

/**
 * Records every object of the collection at `path` (e.g. probe pods by label), started (and synced)
 * before this returns and stopped at the test's end.
 */
export async function record<T extends KubeObject>(
  t: Test,
  env: NodeEnv,
  path: string,
  labelSelector?: string,
): Promise<Recorder<T>> {
  const recorder = new Recorder<T>(env.kube, path, {
    log: (msg) => env.log(msg),
    ...(labelSelector === undefined ? {} : { labelSelector }),
  });
  t.teardown(() => recorder.stop());
  await recorder.start();
  return recorder;
}

/**
 * An observation window, for asserting that nothing happens: runs `check` every 500 ms for `ms`
 * milliseconds, touching Migrator `migrator` (an annotation) each time so the reconciler revisits
 * it, and returns how many reconciles ran meanwhile (its /metrics), so the test can assert that the
 * window spanned several full reconciles.
 */
export async function observe(
  env: ReconcilerEnv,
  migrator: string,
  ms: number,
  check: () => Promise<void>,
): Promise<number> {
  const before = await reconcileCount(env);
  const end = Date.now() + ms;
  let visit = 0;
  while (Date.now() < end) {
    await check();
    await env.kube.patchObject(API_VERSION, KIND, env.namespace, migrator, {
      metadata: { annotations: { [REVISIT_ANNOTATION]: String(++visit) } },
    });
    await delay(500);
  }
  await check();
  return (await reconcileCount(env)) - before;
}

export { nodeOnlyImage, nodeOnlyPod } from "../world/node-only-image.ts";
