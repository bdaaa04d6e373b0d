// The controller: watch-backed caches of Migrators, pods, Jobs, nodes and the workloads that own pods,
// a work queue of Migrator keys fed by their events, workers running `reconcileMigrator`, and the
// ReleaseOracle the waiter API asks (answered from the caches only, by shared answerWait).
//
// Every replica keeps caches and answers waiters; only the leader writes (startWriting /
// stopWriting, driven by the Lease). Events are mapped to the Migrators they concern:
// - a Migrator → itself;
// - a pod → every Migrator in its namespace whose selector matches its labels (now or before the
//   change); a probe or migration pod (label `migrations.coderanger.net/role`) → its Migrator only;
// - a Job → its Migrator (migration Jobs) or, like any workload, the Migrators whose selector
//   matches the labels of the pod template it declares;
// - a Node → nothing: nodes are read (their container runtime explains a probe's failure), never a cause.
import { hostname } from "node:os";
import {
  ANNOTATIONS,
  API_VERSION,
  KIND,
  LABELS,
  answerWait,
  groupOf,
  migratorLabelValue,
  podTemplateOf,
  selectorsOf,
} from "@digest-migrations/shared";
import type {
  JobDefaults,
  KubeObject,
  Labels,
  Migrator,
  Node,
  OwnerLookup,
  PinRecord,
  Pod,
  WaitAnswer,
  WaitQuery,
} from "@digest-migrations/shared";
import { Reflector } from "./cache.ts";
import { CORE_RESOURCES, MultiStore, OPTIONAL_RESOURCES, groupKind } from "./resources.ts";
import type { Resource } from "./resources.ts";
import type { CacheEventType } from "./cache.ts";
import { Kube, KubeConfig, NotLeaderError, collectionPath, isNotFound } from "./kube.ts";
import { log as defaultLog } from "./log.ts";
import type { Logger } from "./log.ts";
import { cachesSynced, reconcileDuration } from "./metrics.ts";
import { WorkQueue } from "./queue.ts";
import { StaleCacheError, reconcileMigrator } from "./reconcile.ts";
import type { Caches, ReconcileContext, Store } from "./reconcile.ts";
import { objectKey, type ReleaseChanges, type ReleaseOracle } from "./release.ts";

export { KubeConfig };

export interface ControllerOptions {
  kubeconfig: KubeConfig;
  /** Namespaces to watch; all namespaces when empty or undefined. */
  namespaces?: string[];
  /** This replica's name (Events' reportingInstance). */
  identity?: string;
  log?: Logger;
  /** A probe still pulling after this long is reported as ProbeFailed (default 300 s). */
  probeImagePullTimeoutSeconds?: number;
  /** Defaults of the Job controls (deadline, TTL) for Migrators that leave them out. */
  jobDefaults?: JobDefaults;
  /**
   * Cache nodes (default true): a probe node's container runtime explains a probe that cannot answer.
   * Namespace-scoped installs cannot be granted the cluster-scoped nodes and turn this off.
   */
  watchNodes?: boolean;
  /** Parallel reconciles of distinct Migrators (default 4). */
  workers?: number;
  /** Visit every Migrator at least this often (default 600 s: a safety net; events and requeues do the work). */
  resyncSeconds?: number;
  /** Resume a watch silent longer than this (default 60 s). */
  watchdogSeconds?: number;
  /** How often to look again for optional APIs (Argo Rollouts) that were absent (default 30 s). */
  discoverySeconds?: number;
}

export class Controller implements ReleaseOracle {
  readonly #opts: ControllerOptions;
  readonly #kube: Kube;
  /** The reconcile path's client: its writes are refused once this replica stops leading. */
  readonly #writer: Kube;
  readonly #log: Logger;
  readonly #identity: string;
  readonly #queue = new WorkQueue();
  readonly #stores = new Map<string, MultiStore<KubeObject>>();
  readonly #listeners = new Set<(changes: ReleaseChanges) => void>();
  /** Migrators and pods changed since the last notification, by objectKey. */
  #changed: { migrators: Set<string>; pods: Set<string> } = { migrators: new Set(), pods: new Set() };
  readonly #pins = new Map<string, PinRecord>();
  readonly #stop = new AbortController();
  readonly #workers: Promise<void>[] = [];
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #missing = new Set<string>();
  #writing = false;
  #started = false;

  constructor(opts: ControllerOptions) {
    this.#opts = opts;
    this.#kube = new Kube(opts.kubeconfig);
    this.#writer = new Kube(opts.kubeconfig, { mayWrite: () => this.#writing });
    this.#log = (opts.log ?? defaultLog).child({ component: "controller" });
    this.#identity = opts.identity ?? hostname();
  }

  get kube(): Kube {
    return this.#kube;
  }

  // ------------------------------------------------------------------ caches

  #store<T extends KubeObject>(apiVersion: string, kind: string): MultiStore<T> | undefined {
    return this.#stores.get(groupKind(apiVersion, kind)) as MultiStore<T> | undefined;
  }

  get migrators(): Store<Migrator> {
    return this.#store<Migrator>(API_VERSION, KIND) ?? new MultiStore<Migrator>();
  }
  get pods(): Store<Pod> {
    return this.#store<Pod>("v1", "Pod") ?? new MultiStore<Pod>();
  }
  get jobs(): Store<KubeObject> {
    return this.#store<KubeObject>("batch/v1", "Job") ?? new MultiStore<KubeObject>();
  }
  get nodes(): Store<Node> {
    return this.#store<Node>("v1", "Node") ?? new MultiStore<Node>();
  }

  readonly lookup: OwnerLookup = {
    get: (apiVersion, kind, namespace, name) => this.#store(apiVersion, kind)?.get(namespace, name),
  };

  #caches(): Caches {
    return { migrators: this.migrators, pods: this.pods, jobs: this.jobs, nodes: this.nodes, lookup: this.lookup };
  }

  #startResource(resource: Resource): Promise<void>[] {
    const store = new MultiStore<KubeObject>();
    this.#stores.set(groupKind(resource.apiVersion, resource.kind), store);
    const namespaces = this.#opts.namespaces?.length && !resource.cluster ? this.#opts.namespaces : [undefined];
    return namespaces.map((namespace) => {
      const reflector = new Reflector<KubeObject>({
        kube: this.#kube,
        apiVersion: resource.apiVersion,
        kind: resource.kind,
        path: collectionPath(resource.apiVersion, resource.plural, namespace),
        log: this.#log,
        watchdogSeconds: this.#opts.watchdogSeconds ?? 60,
      });
      reflector.onEvent((type, object, previous) => this.#onEvent(resource, type, object, previous));
      store.reflectors.push(reflector);
      return reflector.start();
    });
  }

  /** The first served apiVersion of an optional resource, via discovery (GET /apis/<group>/<version>). */
  async #discover(apiVersions: string[], plural: string): Promise<string | undefined> {
    for (const apiVersion of apiVersions) {
      try {
        const list = await this.#kube.get<{ resources?: { name: string }[] }>(`/apis/${apiVersion}`);
        if ((list.resources ?? []).some((r) => r.name === plural)) return apiVersion;
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    }
    return undefined;
  }

  async #startOptional(): Promise<Promise<void>[]> {
    const started: Promise<void>[] = [];
    for (const optional of OPTIONAL_RESOURCES) {
      if (this.#stores.has(`${groupOf(optional.apiVersions[0] ?? "")}/${optional.kind}`)) continue;
      const apiVersion = await this.#discover(optional.apiVersions, optional.plural);
      if (apiVersion === undefined) {
        if (!this.#missing.has(optional.kind))
          this.#log.info({ kind: optional.kind }, "API not served; will look again");
        this.#missing.add(optional.kind);
        continue;
      }
      this.#missing.delete(optional.kind);
      this.#log.info({ kind: optional.kind, apiVersion }, "watching optional API");
      started.push(...this.#startResource({ apiVersion, kind: optional.kind, plural: optional.plural }));
    }
    return started;
  }

  // ------------------------------------------------------------------ lifecycle

  /** Starts the caches and resolves once they are synced; workers start too (they write only when leading). */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    const watchNodes = this.#opts.watchNodes ?? true;
    const syncs = CORE_RESOURCES.filter((r) => watchNodes || r.kind !== "Node").flatMap((r) => this.#startResource(r));
    syncs.push(...(await this.#startOptional()));
    await Promise.all(syncs);
    cachesSynced.set(1);
    for (let i = 0; i < (this.#opts.workers ?? 4); i++) this.#workers.push(this.#work());
    const resync = setInterval(() => this.#enqueueAll(), (this.#opts.resyncSeconds ?? 600) * 1000);
    resync.unref();
    this.#timers.push(resync);
    const discovery = setInterval(
      () => {
        if (this.#missing.size === 0) return;
        this.#startOptional().then(
          (started) =>
            Promise.all(started).then(() => {
              if (started.length > 0) this.#enqueueAll();
            }),
          (error: unknown) => this.#log.warn({ err: error }, "API discovery failed"),
        );
      },
      (this.#opts.discoverySeconds ?? 30) * 1000,
    );
    discovery.unref();
    this.#timers.push(discovery);
    this.#enqueueAll();
  }

  synced(): boolean {
    if (!this.#started) return false;
    for (const store of this.#stores.values()) if (!store.reflectors.every((r) => r.synced())) return false;
    return true;
  }

  /** This replica became the leader: reconcile everything and write. */
  startWriting(): void {
    this.#writing = true;
    this.#log.info("writing enabled (leader)");
    this.#enqueueAll();
  }

  stopWriting(): void {
    this.#writing = false;
    this.#log.info("writing disabled");
  }

  get writing(): boolean {
    return this.#writing;
  }

  async stop(): Promise<void> {
    this.#writing = false;
    this.#stop.abort();
    for (const timer of this.#timers) clearInterval(timer);
    this.#queue.shutdown();
    await Promise.all(this.#workers);
    await Promise.all([...this.#stores.values()].flatMap((s) => s.reflectors.map((r) => r.stop())));
    cachesSynced.set(0);
  }

  /** All reflectors, for tests (disconnect, stats). */
  reflectors(): Reflector<KubeObject>[] {
    return [...this.#stores.values()].flatMap((s) => s.reflectors);
  }

  // ------------------------------------------------------------------ events → keys

  #enqueueAll(): void {
    for (const m of this.migrators.list()) this.#queue.add(`${m.metadata.namespace}/${m.metadata.name}`);
  }

  #enqueue(migrator: Migrator): void {
    this.#queue.add(`${migrator.metadata.namespace}/${migrator.metadata.name}`);
  }

  /** Migrators in `namespace` whose selector matches any of `labelSets`. */
  #enqueueSelecting(namespace: string, labelSets: (Labels | undefined)[]): void {
    for (const migrator of this.migrators.list(namespace)) {
      const selectors = selectorsOf(migrator);
      if (!selectors.ok || labelSets.some((labels) => selectors.select(labels))) this.#enqueue(migrator);
    }
  }

  #enqueueOwnerOf(object: KubeObject): boolean {
    const value = object.metadata.labels?.[LABELS.migrator];
    if (object.metadata.labels?.[LABELS.role] === undefined || value === undefined) return false;
    const namespace = object.metadata.namespace ?? "";
    for (const migrator of this.migrators.list(namespace)) {
      if (migratorLabelValue(migrator.metadata.name ?? "") === value) this.#enqueue(migrator);
    }
    return true;
  }

  #onEvent(resource: Resource, _type: CacheEventType, object: KubeObject, previous: KubeObject | undefined): void {
    const namespace = object.metadata.namespace ?? "";
    switch (resource.kind) {
      case KIND:
        this.#enqueue(object as Migrator);
        this.#notify("migrators", object);
        return;
      case "Node":
        return;
      case "Pod":
        if (!this.#enqueueOwnerOf(object)) {
          this.#enqueueSelecting(namespace, [object.metadata.labels, previous?.metadata.labels]);
        }
        if (_type === "delete") this.#pins.delete(object.metadata.uid ?? "");
        this.#notify("pods", object);
        return;
      default: {
        if (resource.kind === "Job" && this.#enqueueOwnerOf(object)) return;
        const template = podTemplateOf(object, this.lookup);
        const before = previous === undefined ? undefined : podTemplateOf(previous, this.lookup);
        if (template === undefined) {
          for (const m of this.migrators.list(namespace)) this.#enqueue(m);
          return;
        }
        this.#enqueueSelecting(namespace, [template.metadata?.labels, before?.metadata?.labels]);
      }
    }
  }

  // ------------------------------------------------------------------ workers

  async #work(): Promise<void> {
    for (;;) {
      const key = await this.#queue.get();
      if (key === undefined) return;
      // Only the leader reconciles; a follower drops the key (the leader has its own queue), so its
      // reconcile-duration histogram stays empty instead of filling with near-zero samples.
      if (!this.#writing) {
        this.#queue.done(key);
        continue;
      }
      const started = performance.now();
      let result = "success";
      try {
        const slash = key.indexOf("/");
        const outcome = await reconcileMigrator(this.#context(), key.slice(0, slash), key.slice(slash + 1));
        this.#queue.forget(key);
        if (outcome.requeueAfterMs !== undefined) {
          result = outcome.requeueAfterMs === 0 ? "requeue" : "success";
          this.#queue.addAfter(key, outcome.requeueAfterMs);
        }
      } catch (error) {
        result = "error";
        const delay = this.#queue.addRateLimited(key);
        const level = error instanceof StaleCacheError || error instanceof NotLeaderError ? "debug" : "warn";
        this.#log[level]({ err: error, migrator: key, retryInMs: delay }, "reconcile failed; will retry");
      } finally {
        reconcileDuration.observe({ result }, (performance.now() - started) / 1000);
        this.#queue.done(key);
      }
    }
  }

  #context(): ReconcileContext {
    return {
      kube: this.#writer,
      caches: this.#caches(),
      log: this.#log,
      identity: this.#identity,
      now: () => new Date(),
      probeTimeoutSeconds: this.#opts.probeImagePullTimeoutSeconds ?? 300,
      ...(this.#opts.jobDefaults !== undefined ? { jobDefaults: this.#opts.jobDefaults } : {}),
      pins: this.#pins,
    };
  }

  // ------------------------------------------------------------------ ReleaseOracle

  answer(q: WaitQuery): WaitAnswer {
    return answerWait(q, this.migrators.get(q.namespace, q.migrator), this.pods.get(q.namespace, q.pod));
  }

  onChange(listener: (changes: ReleaseChanges) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Notes a changed Migrator or pod; listeners hear of every change once per burst of cache events.
   * A notification is pending exactly while changes are noted, so the first change of a burst schedules it.
   */
  #notify(kind: keyof ReleaseChanges, object: KubeObject): void {
    const pending = this.#changed.migrators.size > 0 || this.#changed.pods.size > 0;
    this.#changed[kind].add(objectKey(object.metadata.namespace ?? "", object.metadata.name ?? ""));
    if (pending) return;
    setImmediate(() => {
      const changes = this.#changed;
      this.#changed = { migrators: new Set(), pods: new Set() };
      for (const listener of [...this.#listeners]) {
        try {
          listener(changes);
        } catch (error) {
          this.#log.error({ err: error }, "release listener failed");
        }
      }
    });
  }
}

/** The retry annotation, re-exported for callers that set it. */
export const RETRY_ANNOTATION = ANNOTATIONS.retry;
