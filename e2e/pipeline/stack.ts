// The whole story in one handle, for scenarios and the demo, on the real node: the reconciler
// installed with the Helm chart (its image from Dockerfile.reconciler), the shop application in
// its own git checkout, its images built with buildah and pushed by "CI", Argo CD's sync (the
// plugin's generate inside the plugin image, then server-side apply), PostgreSQL on the host.
//
//   const shop = await startShop(t);                   // per test: namespace, database, reconciler
//   const v1 = await shop.push("v1"); await shop.sync(); // CI pushes, Argo CD syncs
//   await shop.waitRolledOut(v1);
//   await shop.push("v2"); await shop.restart();        // CI pushes a new latest and restarts
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { KubeObject, Migrator, Pod } from "@digest-migrations/shared";
import { API_VERSION, KIND } from "@digest-migrations/shared";
import { waitFor } from "../kit/wait.ts";
import type { ObjectList } from "../kit/client.ts";
import { Recorder } from "../kit/reflector.ts";
import {
  APP_CONTAINER,
  DEPLOYMENT,
  MANIFESTS_DIR,
  MIGRATOR,
  checkout,
  databaseSecret,
  pushBuild,
  retagLatest,
} from "../apps/shop/builds.ts";
import type { BuildName, BuildOptions } from "../apps/shop/builds.ts";
import { readHistory } from "../apps/shop/database.ts";
import type { ShopHistory } from "../apps/shop/database.ts";
import type { NodeEnv } from "../world/env.ts";
import { ReconcilerRelease } from "../world/reconciler-release.ts";
import type { ReleaseOptions } from "../world/reconciler-release.ts";
import { RESTARTED_AT, restart } from "./restart.ts";
import { sync } from "./sync.ts";
import type { SyncResult } from "./sync.ts";

export interface ShopOptions {
  /** The reconciler release (replicas, flags, chart values). */
  reconciler?: ReleaseOptions;
  /** The application directory in git (default the shop's manifests). */
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
  readonly env: NodeEnv;
  readonly release: ReconcilerRelease;
  /** The team's repository as Argo CD checks it out; the application is its `shop/` directory. */
  readonly repoDir: string;
  readonly appDir: string;
  /** Every digest CI pushed, with its build. */
  readonly pushes: { build: BuildName; digest: string }[] = [];
  /** Every pod of the namespace the API showed, in its last state (deleted ones included). */
  readonly podHistory: Recorder<Pod>;
  /** The template stamp of the last restart: a rollout is done when every pod carries it. */
  #restartedAt: string | undefined;

  constructor(env: NodeEnv, release: ReconcilerRelease, repoDir: string, appDir: string, podHistory: Recorder<Pod>) {
    this.env = env;
    this.release = release;
    this.repoDir = repoDir;
    this.appDir = appDir;
    this.podHistory = podHistory;
  }

  get namespace(): string {
    return this.env.namespace;
  }

  get databaseUrl(): string {
    const db = this.env.database;
    if (!db) throw new Error("this shop runs without PostgreSQL");
    return db.url;
  }

  /** CI builds `build` and pushes it as app:latest; returns the new digest. */
  async push(build: BuildName, opts: BuildOptions = {}): Promise<string> {
    const digest = await pushBuild(this.env.images, build, opts);
    this.pushes.push({ build, digest });
    return digest;
  }

  /** A rollback: latest points at an earlier digest again. */
  retag(digest: string): Promise<void> {
    return retagLatest(this.env.images, digest);
  }

  /** Argo CD syncs the application from git: generate in the plugin image, then apply. */
  sync(parameters: Record<string, string> = {}): Promise<SyncResult> {
    return sync(this.appDir, {
      kubeconfig: this.env.world.adminKubeconfig,
      namespace: this.namespace,
      appName: "shop",
      waiterImage: this.env.world.images.reconciler,
      reconcilerUrl: this.release.waiterUrl,
      pluginImage: this.env.world.images.plugin,
      parameters,
      log: (l) => this.env.log(`sync: ${l}`),
    });
  }

  /** `kubectl rollout restart deployment/myapp`. */
  async restart(name = DEPLOYMENT, kind = "Deployment", apiVersion = "apps/v1"): Promise<string> {
    this.#restartedAt = await restart(this.env.kube, { namespace: this.namespace, name, kind, apiVersion });
    return this.#restartedAt;
  }

  history(): Promise<ShopHistory> {
    return readHistory(this.databaseUrl, (id) => this.env.images.digestOfBuild(id));
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

  async waitMigrated(digest: string, name = MIGRATOR, timeoutMs = 120_000): Promise<Migrator> {
    return waitFor(
      async () => {
        const m = await this.migrator(name);
        return m?.status?.lastSuccessfulMigration === digest ? m : undefined;
      },
      {
        what: `Migrator ${name} to record ${digest}`,
        timeoutMs,
        describe: async () =>
          `status: ${JSON.stringify((await this.migrator(name))?.status)}; pods: ${await this.describePods()}`,
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
   * container from `digest` (pinned in the spec and reported in imageID) and, after a restart(),
   * each of the restarted template.
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
        const stamp = this.#restartedAt;
        const ok = pods.every(
          (p) =>
            !p.terminating &&
            p.appRunning &&
            p.imageID?.endsWith(`@${digest}`) &&
            (stamp === undefined || p.pod.metadata.annotations?.[RESTARTED_AT] === stamp),
        );
        return ok ? pods : undefined;
      },
      {
        what: `${replicas} pods of ${opts.app ?? DEPLOYMENT} running ${digest}`,
        timeoutMs: opts.timeoutMs ?? 120_000,
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
   * What the runtime, the pods and the database say about gating, as sentences (empty = as
   * promised): every app container containerd started (its event stream, resolved to the image's
   * repository digests in containerd's content store) ran a digest the Migrator records as
   * migrated, and exactly the digest its pod was pinned to, once (a kubelet that started the
   * unpinned spec and restarted the container after the pin shows as a wrong digest or a second
   * start); every app start in the database came after a successful migration run.
   */
  async gatingProblems(opts: { app?: string } = {}): Promise<string[]> {
    const problems: string[] = [];
    const migrated = new Set(await this.migratedDigests());
    const h = await this.history();
    await this.env.starts.settled();
    problems.push(...this.env.starts.errors);
    const startsPerPod = new Map<string, number>();
    for (const s of this.env.starts.starts) {
      if (s.container !== APP_CONTAINER) continue;
      if (opts.app && !s.pod.startsWith(`${opts.app}-`)) continue;
      startsPerPod.set(s.podUid, (startsPerPod.get(s.podUid) ?? 0) + 1);
      const digests = s.repoDigests.map((d) => d.slice(d.lastIndexOf("@") + 1));
      const what = `containerd started app in pod ${s.pod} from image ${s.imageId} (${digests.join(", ") || "no repository digest"})`;
      if (!digests.some((d) => migrated.has(d))) problems.push(`${what}, which is not recorded as migrated`);
      const spec = this.podHistory.seen.get(s.podUid)?.spec.containers.find((c) => c.name === APP_CONTAINER)?.image;
      const pinned = spec?.includes("@") ? spec.slice(spec.lastIndexOf("@") + 1) : undefined;
      if (pinned === undefined)
        problems.push(`${what}, but the pod's spec was never pinned (${spec ?? "pod not seen"})`);
      else if (!digests.includes(pinned)) problems.push(`${what}, not the digest ${pinned} its pod is pinned to`);
    }
    for (const [uid, n] of startsPerPod) {
      if (n > 1)
        problems.push(
          `the app container of pod ${this.podHistory.seen.get(uid)?.metadata.name ?? uid} started ${n} times`,
        );
    }
    const firstSuccess = new Map<string, number>();
    for (const r of h.runs) {
      if (r.status === "succeeded" && r.digest && r.finishedAt && !firstSuccess.has(r.digest))
        firstSuccess.set(r.digest, r.finishedAt.getTime());
    }
    const successBefore = (at: number): boolean => [...firstSuccess.values()].some((t) => t <= at);
    for (const s of h.starts) {
      if (opts.app && !s.pod?.startsWith(`${opts.app}-`)) continue;
      if (!s.ok) problems.push(`app in ${s.pod} (${s.digest}) refused to start: missing ${s.missing.join(", ")}`);
      else if (!successBefore(s.startedAt.getTime()))
        problems.push(`app in ${s.pod} (${s.digest}) started before any migration finished`);
    }
    return problems;
  }

  /** The waiter init containers containerd started more than once in a pod (they should exit 0, once). */
  waiterRestarts(): string[] {
    const perPod = new Map<string, number>();
    for (const s of this.env.starts.starts) {
      if (!s.container.startsWith("migrate-wait-")) continue;
      const key = `${s.pod}/${s.container}`;
      perPod.set(key, (perPod.get(key) ?? 0) + 1);
    }
    return [...perPod].filter(([, n]) => n > 1).map(([k, n]) => `${k} started ${n} times`);
  }

  /** Stops recording and removes the checkout. */
  async stop(): Promise<void> {
    await this.podHistory.stop();
    fs.rmSync(this.repoDir, { recursive: true, force: true });
  }
}

/**
 * Sets up the shop in `env`'s namespace: the reconciler installed with Helm, the app's database
 * Secret, the team's checkout. The caller stops it with `shop.stop()` (startShop does that in the
 * test's teardown).
 */
export async function setupShop(env: NodeEnv, opts: ShopOptions = {}): Promise<Shop> {
  const release = await ReconcilerRelease.install(env.world, env.kube, env.namespace, opts.reconciler);
  if (env.database)
    await env.kube.createObject(databaseSecret(env.namespace, env.database.url) as unknown as KubeObject);
  const repoDir = fs.mkdtempSync(path.join(os.tmpdir(), "dm-shop-repo-"));
  // The plugin reads it as the sidecar's user (999).
  fs.chmodSync(repoDir, 0o755);
  const appDir = checkout(env.images, path.join(repoDir, "shop"), opts.appDir ?? MANIFESTS_DIR);
  const podHistory = new Recorder<Pod>(env.kube, `/api/v1/namespaces/${env.namespace}/pods`);
  await podHistory.start();
  return new Shop(env, release, repoDir, appDir, podHistory);
}
