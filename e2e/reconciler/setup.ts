// Shared set-up of the reconciler's end-to-end tests: the Migrator CRD, the reconciler's RBAC
// (reconciler/deploy/rbac.yaml, bound to a ServiceAccount of the test's namespace), the
// Controller running in-process under that ServiceAccount's kubeconfig, the waiter API it
// answers, and the test application's images and objects.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import type { Test } from "tap";
import {
  ANNOTATIONS,
  API_VERSION,
  CONDITION_READY,
  KIND,
  PLURAL,
  waiterInitContainer,
} from "@digest-migrations/shared";
import type { Container, KubeObject, Migrator, MigratorSpec, Pod } from "@digest-migrations/shared";
import { Controller, KubeConfig } from "../../reconciler/src/controller.ts";
import { createLogger } from "../../reconciler/src/log.ts";
import { migrationsStarted, reconcileDuration } from "../../reconciler/src/metrics.ts";
import { createWaiterApi } from "../../reconciler/src/waiter-api.ts";
import { testEnv } from "../harness/env.ts";
import type { TestEnv, TestEnvOptions } from "../harness/env.ts";
import { waiterImage } from "../harness/images.ts";
import type { ImageContent } from "../node/registry.ts";
import type { ObjectList } from "../kit/client.ts";
import { Recorder } from "../kit/reflector.ts";
import { delay, waitFor } from "../kit/wait.ts";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const APP = path.join(repo, "e2e/reconciler/fixtures/app.ts");
export const APP_IMAGE = "registry.example/app";
export const WAITER_IMAGE = "registry.example/digest-migrations:test";
const SERVICE_ACCOUNT = "digest-migrations-reconciler";

/** The test application's image content: `migrate` and `serve` commands, APP_VERSION in ENV. */
export function appImage(version: string, env: Record<string, string> = {}): ImageContent {
  return {
    commands: {
      migrate: [process.execPath, APP, "migrate"],
      serve: [process.execPath, APP, "serve"],
    },
    env: { APP_VERSION: version, ...env },
  };
}

function docs(file: string): KubeObject[] {
  return parseAllDocuments(readFileSync(path.join(repo, file), "utf8"))
    .map((d) => d.toJSON() as KubeObject | null)
    .filter((d): d is KubeObject => d !== null);
}

async function createOrKeep(env: TestEnv, obj: KubeObject): Promise<void> {
  try {
    await env.kube.createObject(obj);
  } catch (error) {
    if ((error as { status?: number }).status !== 409) throw error;
  }
}

/** Installs the Migrator CRD (once per cluster) and waits until it is served. */
async function installCrd(env: TestEnv): Promise<void> {
  for (const crd of docs("reconciler/deploy/crd.yaml")) await createOrKeep(env, crd);
  await waitFor(
    async () => {
      const list = await env.kube.get<{ resources?: { name: string }[] }>(`/apis/${API_VERSION}`);
      return (list.resources ?? []).some((r) => r.name === PLURAL);
    },
    { what: "the Migrator CRD to be served", timeoutMs: 30_000 },
  );
}

/**
 * The reconciler's ClusterRole from rbac.yaml bound to a ServiceAccount in `namespace`; returns
 * that ServiceAccount's kubeconfig, so the Controller runs with exactly the shipped permissions.
 */
async function reconcilerKubeconfig(env: TestEnv): Promise<KubeConfig> {
  const file = await env.cluster.kubeconfigFor(env.namespace, SERVICE_ACCOUNT);
  const rbac = docs("reconciler/deploy/rbac.yaml");
  const role = rbac.find((d) => d.kind === "ClusterRole");
  if (role === undefined) throw new Error("reconciler/deploy/rbac.yaml has no ClusterRole");
  await createOrKeep(env, role);
  await env.kube.createObject({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: `${role.metadata.name}-${env.namespace}` },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata.name },
    subjects: [{ kind: "ServiceAccount", name: SERVICE_ACCOUNT, namespace: env.namespace }],
  });
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  return kc;
}

export interface ReconcilerEnv extends TestEnv {
  controller: Controller;
  waiterUrl: string;
  /** A waiter init container for `migrator` gating container `container`. */
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

export async function reconcilerEnv(
  t: Test,
  opts: TestEnvOptions & { controller?: Partial<ConstructorParameters<typeof Controller>[0]> } = {},
): Promise<ReconcilerEnv> {
  const env = await testEnv(t, opts);
  await installCrd(env);
  env.registry.push("registry.example/digest-migrations", "test", waiterImage());
  const kubeconfig = await reconcilerKubeconfig(env);
  const log = createLogger({ level: process.env.DM_E2E_VERBOSE ? "debug" : "silent" });
  const controller = new Controller({
    kubeconfig,
    namespaces: [env.namespace],
    identity: "e2e",
    log,
    probeImagePullTimeoutSeconds: 60,
    ...opts.controller,
  });
  const api = createWaiterApi({ oracle: controller, log, rateLimit: { burst: 1000, perSecond: 1000 } });
  const address = await api.listen(0, "127.0.0.1");
  const waiterUrl = `http://127.0.0.1:${address.port}`;
  await controller.start();
  controller.startWriting();
  t.teardown(async () => {
    await api.close();
    await controller.stop();
  });

  const migratorPath = `/apis/${API_VERSION}/namespaces/${env.namespace}/${PLURAL}`;
  const databaseUrl = env.database?.url ?? "";
  const self: ReconcilerEnv = {
    ...env,
    controller,
    waiterUrl,
    waiter: (migrator, container = "app") =>
      waiterInitContainer(migrator, container, { image: WAITER_IMAGE, apiUrl: waiterUrl }),
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
      if (env.database === undefined || env.postgres === undefined) throw new Error("no database");
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
    async waitEvents(reason, timeoutMs = 10_000) {
      return waitFor(
        async () => {
          const events = await self.events(reason);
          return events.length > 0 ? events : undefined;
        },
        { what: `an Event ${reason} on a Migrator`, timeoutMs },
      );
    },
    async waitReady(name, digest, timeoutMs = 60_000) {
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
    async waitReason(name, reason, timeoutMs = 60_000) {
      return waitFor(
        async () => {
          const m = await self.getMigrator(name);
          return m?.status?.conditions?.find((c) => c.type === CONDITION_READY)?.reason === reason ? m : undefined;
        },
        { what: `Migrator ${name} to say ${reason}`, timeoutMs, describe: () => describeMigrator(self, name) },
      );
    },
  };
  void databaseUrl;
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

/** The application container: `serve` of the app image, DATABASE_URL of the test database. */
export function appContainer(env: TestEnv, image = `${APP_IMAGE}:latest`): Container {
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
  };
}

/** The running app pods' gated container images, of pods past their waiter. */
export function runningImages(pods: Pod[]): string[] {
  return pods
    .filter((p) => p.metadata.deletionTimestamp === undefined && p.status?.phase === "Running")
    .flatMap((p) => (p.status?.containerStatuses ?? []).filter((s) => s.name === "app").map((s) => s.imageID));
}

/**
 * Writes the status a kubelet reports for a running pod whose container `app` runs `imageID` (a pod on a
 * node no emulator runs, so the test plays that node's kubelet). A `docker://sha256:…` ID without a
 * repository is what a node reports for an image built or loaded there: no repository digest.
 */
export async function reportRunning(env: ReconcilerEnv, podName: string, imageID: string): Promise<void> {
  await env.kube.request("PATCH", `/api/v1/namespaces/${env.namespace}/pods/${podName}/status`, {
    contentType: "application/merge-patch+json",
    body: {
      status: {
        phase: "Running",
        containerStatuses: [
          {
            name: "app",
            image: `${APP_IMAGE}:latest`,
            imageID,
            ready: true,
            restartCount: 0,
            state: { running: {} },
          },
        ],
      },
    },
  });
}

/** Migration Jobs the controller created (digest_migrations_migrations_started_total) for `migrator` of `env`. */
export async function jobsStarted(env: TestEnv, migrator = "db"): Promise<number> {
  const metric = await migrationsStarted.get();
  return metric.values.find((v) => v.labels.namespace === env.namespace && v.labels.migrator === migrator)?.value ?? 0;
}

/** Reconciles this process has run so far (every result), from digest_migrations_reconcile_duration_seconds. */
export async function reconcileCount(): Promise<number> {
  const metric = await reconcileDuration.get();
  return metric.values
    .filter((v) => v.metricName === "digest_migrations_reconcile_duration_seconds_count")
    .reduce((sum, v) => sum + v.value, 0);
}

/**
 * Records every object of the collection at `path` (e.g. probe pods by label), started (and synced)
 * before this returns and stopped at the test's end.
 */
export async function record<T extends KubeObject>(
  t: Test,
  env: TestEnv,
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
 * An observation window, for asserting that nothing happens: runs `check` every 250 ms for `ms`
 * milliseconds and returns how many reconciles ran meanwhile, so the test can assert that the window
 * spanned several revisits of the Migrator (run the controller with a short `resyncSeconds`).
 */
export async function observe(ms: number, check: () => Promise<void>): Promise<number> {
  const before = await reconcileCount();
  const end = Date.now() + ms;
  while (Date.now() < end) {
    await check();
    await delay(250);
  }
  await check();
  return (await reconcileCount()) - before;
}
