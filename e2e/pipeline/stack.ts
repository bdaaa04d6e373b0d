// The whole story in one handle, for scenarios and the demo: a control plane, a node, PostgreSQL,
// the reconciler (real processes behind a loopback "Service"), the shop application in git, and CI.
//
//   const shop = await startShop(t);              // per test: fresh namespace and database
//   shop.push("v1"); await shop.sync();           // CI pushes, Argo CD syncs
//   await shop.waitRolledOut(digest);
//   shop.push("v2"); await shop.restart();        // CI pushes a new latest and restarts
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { KubeObject, Migrator, Pod } from "@digest-migrations/shared";
import { API_VERSION, KIND } from "@digest-migrations/shared";
import type { TestEnv, TestEnvOptions } from "../harness/env.ts";
import { waiterImage } from "../harness/images.ts";
import { waitFor } from "../harness/wait.ts";
import type { ObjectList } from "../node/kube.ts";
import {
  APP_CONTAINER,
  DEPLOYMENT,
  MANIFESTS_DIR,
  MIGRATOR,
  databaseSecret,
  pushBuild,
  retagLatest,
} from "../apps/shop/builds.ts";
import type { BuildName, BuildOptions } from "../apps/shop/builds.ts";
import { readHistory } from "../apps/shop/database.ts";
import type { ShopHistory } from "../apps/shop/database.ts";
import { installLeaseRbac, installReconciler } from "./install.ts";
import type { Installation } from "./install.ts";
import { runReconciler } from "./reconciler.ts";
import type { ReconcilerOptions, ReconcilerProcess } from "./reconciler.ts";
import { restart } from "./restart.ts";
import { ServiceProxy } from "./service.ts";
import { sync } from "./sync.ts";
import type { SyncResult } from "./sync.ts";

/** The reconciler image as pods name it (the waiter init containers run from it). */
export const WAITER_IMAGE = "registry.example/digest-migrations/reconciler:e2e";

let installation: Promise<Installation> | undefined;

export interface ShopOptions extends TestEnvOptions {
  /** Reconciler replicas started at once (default 1; 0 to start them later). */
  replicas?: number;
  reconciler?: Partial<ReconcilerOptions>;
  /** The application directory (default the shop's manifests). */
  appDir?: string;
}

export interface PodView {
  name: string;
  phase: string | undefined;
  terminating: boolean;
  /** The app container's spec image (pinned by the reconciler: name:tag@digest). */
  image: string | undefined;
  imageID: string | undefined;
  appRunning: boolean;
  waiting: boolean;
  pod: Pod;
}

export class Shop {
  readonly env: TestEnv;
  readonly install: Installation;
  readonly service: ServiceProxy;
  readonly reconcilers: ReconcilerProcess[] = [];
  readonly logDir: string;
  readonly appDir: string;
  readonly #reconcilerOpts: Partial<ReconcilerOptions>;
  /** Every digest CI pushed, with its build. */
  readonly pushes: { build: BuildName; digest: string }[] = [];

  constructor(env: TestEnv, install: Installation, service: ServiceProxy, logDir: string, opts: ShopOptions) {
    this.env = env;
    this.install = install;
    this.service = service;
    this.logDir = logDir;
    this.appDir = opts.appDir ?? MANIFESTS_DIR;
    this.#reconcilerOpts = opts.reconciler ?? {};
  }

  get namespace(): string {
    return this.env.namespace;
  }

  get databaseUrl(): string {
    const db = this.env.database;
    if (!db) throw new Error("this shop runs without PostgreSQL");
    return db.url;
  }

  /** Starts one more reconciler replica and adds it to the Service. */
  async addReconciler(extra: Partial<ReconcilerOptions> = {}): Promise<ReconcilerProcess> {
    const r = await runReconciler({
      kubeconfig: this.install.kubeconfig,
      namespaces: [this.namespace],
      leaseNamespace: this.namespace,
      logDir: this.logDir,
      identity: `reconciler-${this.reconcilers.length + 1}`,
      ...this.#reconcilerOpts,
      ...extra,
    });
    this.reconcilers.push(r);
    this.service.setBackends(this.reconcilers.map((x) => x.waiterPort));
    return r;
  }

  /** CI builds `build` and pushes it as registry.example/app:latest. */
  push(build: BuildName, opts: BuildOptions = {}): string {
    const digest = pushBuild(this.env.registry, build, opts);
    this.pushes.push({ build, digest });
    return digest;
  }

  /** A rollback: latest points at an earlier digest again. */
  retag(digest: string): void {
    retagLatest(this.env.registry, digest);
  }

  /** Argo CD syncs the application from git. */
  sync(parameters: Record<string, string> = {}): Promise<SyncResult> {
    return sync(this.appDir, {
      kubeconfig: this.env.cluster.adminKubeconfig,
      namespace: this.namespace,
      appName: "shop",
      waiterImage: WAITER_IMAGE,
      reconcilerUrl: this.service.url,
      parameters,
      log: (l) => this.env.log(`sync: ${l}`),
    });
  }

  /** `kubectl rollout restart deployment/myapp`. */
  restart(name = DEPLOYMENT, kind = "Deployment", apiVersion = "apps/v1"): Promise<string> {
    return restart(this.env.kube, { namespace: this.namespace, name, kind, apiVersion });
  }

  history(): Promise<ShopHistory> {
    return readHistory(this.databaseUrl);
  }

  async migrator(name = MIGRATOR): Promise<Migrator | undefined> {
    return this.env.kube.getObject<Migrator>(API_VERSION, KIND, this.namespace, name);
  }

  /** Digests recorded as migrated on the Migrator (history and lastSuccessfulMigration). */
  async migratedDigests(name = MIGRATOR): Promise<string[]> {
    const m = await this.migrator(name);
    const list = (m?.status?.migratedDigests ?? []).map((r) => r.digest);
    const last = m?.status?.lastSuccessfulMigration;
    return last && !list.includes(last) ? [last, ...list] : list;
  }

  async waitMigrated(digest: string, name = MIGRATOR, timeoutMs = 60_000): Promise<Migrator> {
    return waitFor(
      async () => {
        const m = await this.migrator(name);
        return m?.status?.lastSuccessfulMigration === digest ? m : undefined;
      },
      {
        what: `Migrator ${name} to record ${digest}`,
        timeoutMs,
        describe: async () => `status: ${JSON.stringify((await this.migrator(name))?.status)}`,
      },
    );
  }

  /** Pods of the app (label app=<name>), as the node runs them. */
  async pods(app = DEPLOYMENT, container = APP_CONTAINER): Promise<PodView[]> {
    const list = await this.env.kube.get<ObjectList<Pod>>(
      `/api/v1/namespaces/${this.namespace}/pods?labelSelector=${encodeURIComponent(`app=${app}`)}`,
    );
    return list.items.map((pod) => {
      const spec = pod.spec.containers.find((c) => c.name === container);
      const status = pod.status?.containerStatuses?.find((c) => c.name === container);
      const initWaiting = (pod.status?.initContainerStatuses ?? []).some((c) => !c.state?.terminated);
      return {
        name: pod.metadata.name ?? "",
        phase: pod.status?.phase,
        terminating: Boolean(pod.metadata.deletionTimestamp),
        image: spec?.image,
        imageID: status?.imageID || undefined,
        appRunning: Boolean(status?.state?.running),
        waiting: initWaiting,
        pod,
      };
    });
  }

  /**
   * Waits until exactly `replicas` pods of the app exist, none terminating, each running its app
   * container from `digest` (pinned in the spec and reported in imageID).
   */
  async waitRolledOut(
    digest: string,
    opts: { app?: string; replicas?: number; timeoutMs?: number } = {},
  ): Promise<PodView[]> {
    const replicas = opts.replicas ?? 2;
    return waitFor(
      async () => {
        const pods = await this.pods(opts.app);
        if (pods.length !== replicas) return undefined;
        const ok = pods.every((p) => !p.terminating && p.appRunning && p.imageID?.endsWith(`@${digest}`));
        return ok ? pods : undefined;
      },
      {
        what: `${replicas} pods of ${opts.app ?? DEPLOYMENT} running ${digest}`,
        timeoutMs: opts.timeoutMs ?? 60_000,
        describe: async () => this.describePods(opts.app),
      },
    );
  }

  async describePods(app?: string): Promise<string> {
    const pods = await this.pods(app);
    return (
      pods
        .map(
          (p) =>
            `${p.name}: ${p.phase}${p.terminating ? " terminating" : ""} image=${p.image} imageID=${p.imageID ?? "-"} ` +
            `${p.appRunning ? "running" : p.waiting ? "gated" : "not running"}`,
        )
        .join("; ") || "no pods"
    );
  }

  /** Migration Jobs the reconciler created (label migrations.coderanger.net/migrator). */
  async jobs(): Promise<KubeObject[]> {
    const list = await this.env.kube.get<ObjectList<KubeObject>>(
      `/apis/batch/v1/namespaces/${this.namespace}/jobs?labelSelector=${encodeURIComponent("migrations.coderanger.net/migrator")}`,
    );
    return list.items;
  }

  /** Events about an object of the namespace (default the Migrator), oldest first. */
  async events(name = MIGRATOR, kind = KIND): Promise<{ reason: string; message: string; type: string }[]> {
    const list = await this.env.kube.get<
      ObjectList<{
        reason?: string;
        message?: string;
        type?: string;
        involvedObject?: { name?: string; kind?: string };
      }>
    >(`/api/v1/namespaces/${this.namespace}/events`);
    return list.items
      .filter((e) => e.involvedObject?.name === name && e.involvedObject.kind === kind)
      .map((e) => ({ reason: e.reason ?? "", message: e.message ?? "", type: e.type ?? "" }));
  }

  /** Waits for an Event on the Migrator that `matches` (Events are written just after the status). */
  async waitEvent(
    matches: (e: { reason: string; message: string; type: string }) => boolean,
    what: string,
  ): Promise<{ reason: string; message: string; type: string }> {
    return waitFor(async () => (await this.events()).find(matches), { what, timeoutMs: 10_000 });
  }

  /**
   * What the pods and the database say about gating, as sentences (empty = as promised): every app
   * container the node started ran a digest the Migrator records as migrated, and its app accepted
   * the schema; every app start in the database came after a successful migration run of a digest
   * that the Migrator records.
   */
  async gatingProblems(opts: { app?: string } = {}): Promise<string[]> {
    const problems: string[] = [];
    const migrated = new Set(await this.migratedDigests());
    const h = await this.history();
    const starts = this.env.node.startsMatching({ container: APP_CONTAINER, ok: true });
    for (const s of starts) {
      if (s.namespace !== this.namespace) continue;
      if (opts.app && !s.pod.startsWith(`${opts.app}-`)) continue;
      if (!migrated.has(s.digest))
        problems.push(`pod ${s.pod} started app from ${s.digest}, which is not recorded as migrated`);
      if (!s.image.endsWith(`@${s.digest}`))
        problems.push(`pod ${s.pod} started app from an unpinned image ${s.image}`);
    }
    const firstSuccess = new Map<string, number>();
    for (const r of h.runs) {
      if (r.status === "succeeded" && r.digest && r.finishedAt && !firstSuccess.has(r.digest))
        firstSuccess.set(r.digest, r.finishedAt.getTime());
    }
    const lastSuccessBefore = (at: number): boolean => [...firstSuccess.values()].some((t) => t <= at);
    for (const s of h.starts) {
      if (opts.app && !s.pod?.startsWith(`${opts.app}-`)) continue;
      if (!s.ok) problems.push(`app in ${s.pod} (${s.digest}) refused to start: missing ${s.missing.join(", ")}`);
      else if (!lastSuccessBefore(s.startedAt.getTime()))
        problems.push(`app in ${s.pod} (${s.digest}) started before any migration finished`);
    }
    return problems;
  }

  /** Stops the reconcilers and the Service and removes the logs (kept with DM_KEEP_LOGS=1). */
  async stop(): Promise<void> {
    await Promise.all(this.reconcilers.map((r) => r.stop()));
    await this.service.close();
    if (!process.env.DM_KEEP_LOGS) fs.rmSync(this.logDir, { recursive: true, force: true });
  }
}

/** Installs the reconciler's cluster pieces once per control plane (CRD, RBAC, ServiceAccount). */
function installOnce(env: TestEnv): Promise<Installation> {
  installation ??= installReconciler(env.cluster);
  return installation;
}

/**
 * Sets up the shop in `env`'s namespace: the leader-election RBAC, the reconciler image in the
 * registry, the app's database Secret, the Service, and `opts.replicas` reconcilers (default 1).
 * The caller stops it with `shop.stop()` (startShop does that in the test's teardown).
 */
export async function setupShop(env: TestEnv, opts: ShopOptions = {}): Promise<Shop> {
  const install = await installOnce(env);
  await installLeaseRbac(env.cluster, env.namespace);
  env.registry.push(WAITER_IMAGE.replace(/:e2e$/, ""), "e2e", waiterImage());
  if (env.database)
    await env.kube.createObject(databaseSecret(env.namespace, env.database.url) as unknown as KubeObject);
  const service = await ServiceProxy.start();
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), "dm-shop-logs-"));
  const shop = new Shop(env, install, service, logDir, opts);
  try {
    for (let i = 0; i < (opts.replicas ?? 1); i++) await shop.addReconciler();
  } catch (err) {
    await shop.stop();
    throw err;
  }
  return shop;
}
