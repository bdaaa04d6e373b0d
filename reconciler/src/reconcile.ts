// One reconcile of one Migrator: snapshot → plan → execute. Level-triggered: the snapshot is read from
// the caches (never from the event that caused the visit), every decision is shared/src/plan.ts, and
// this file carries the Plan out in order — pins first, then probes, the Job, stale Jobs, the status and
// its Events — through the guarded, idempotent writes of writes.ts (uid and resourceVersion
// preconditions, deterministic names, the leadership fence). Any order of events, duplicates or a
// restart therefore converge to the same state.
import { plan } from "@digest-migrations/shared";
import type {
  JobDefaults,
  KubeObject,
  Migrator,
  Node,
  OwnerLookup,
  PinRecord,
  Pod,
  Snapshot,
} from "@digest-migrations/shared";
import { collectionPath, objectPath } from "./kube.ts";
import type { Kube } from "./kube.ts";
import type { Logger } from "./log.ts";
import { migrationsStarted } from "./metrics.ts";
import { create, jobPath, observeProbe, pinPod, recordEvent, remove, writeStatus } from "./writes.ts";

export { StaleCacheError } from "./writes.ts";

/** Read access to one cache. */
export interface Store<T> {
  get(namespace: string | undefined, name: string): T | undefined;
  list(namespace?: string): T[];
}

export interface Caches {
  migrators: Store<Migrator>;
  pods: Store<Pod>;
  jobs: Store<KubeObject>;
  nodes: Store<Node>;
  /** Owners of pods (ReplicaSets, Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, Rollouts). */
  lookup: OwnerLookup;
}

export interface ReconcileContext {
  kube: Kube;
  caches: Caches;
  log: Logger;
  /** reportingInstance of Events. */
  identity: string;
  now(): Date;
  /** A probe without an answer after this long is reported as ProbeFailed (unless the Migrator says otherwise). */
  probeTimeoutSeconds: number;
  /** Defaults of the Job controls a Migrator leaves out. */
  jobDefaults?: JobDefaults;
  /** Pins written or refused by this process that the pod cache may not show yet, by pod uid. */
  pins: Map<string, PinRecord>;
}

export interface ReconcileResult {
  /** Visit again after this many milliseconds (the state may change without an event). */
  requeueAfterMs?: number;
}

export async function reconcileMigrator(
  ctx: ReconcileContext,
  namespace: string,
  name: string,
): Promise<ReconcileResult> {
  const migrator = ctx.caches.migrators.get(namespace, name);
  if (migrator === undefined) return {};
  const log = ctx.log.child({ migrator: `${namespace}/${name}` });
  const planned = plan(snapshotOf(ctx, migrator), ctx.now());
  for (const uid of planned.forgetPins) ctx.pins.delete(uid);
  let requeueAfterMs = planned.requeueAfterMs;
  const soon = (): void => void (requeueAfterMs = Math.min(requeueAfterMs ?? 1000, 1000));

  // Pins first: a gated pod is pinned before anything can release it. An outcome the plan did not
  // assume (a new refusal, or a success after one) changes its decisions: decide again at once.
  for (const pin of planned.pins) {
    const outcome = await pinPod(ctx, namespace, pin, log);
    if (outcome !== "gone" && outcome !== pin.expect) return { requeueAfterMs: 0 };
  }
  // Then the Job: the migration is what every waiter waits for; probe clean-up can follow it.
  const job = planned.job;
  if (job.kind === "create") {
    const jobName = job.job.metadata.name ?? "";
    if (job.replaces !== undefined) {
      await remove(ctx, jobPath(namespace, job.replaces.name), job.replaces.uid, { propagationPolicy: "Background" });
      log.info({ digest: job.digest, job: job.replaces.name }, "deleted the failed migration Job to retry it");
    }
    if (await create(ctx, collectionPath("batch/v1", "jobs", namespace), job.job)) {
      migrationsStarted.inc({ namespace, migrator: name });
      if (job.warning !== undefined) await recordEvent(ctx, migrator, job.warning);
      log.info({ digest: job.digest, job: jobName, template: job.template }, "created migration Job");
    } else soon();
  }
  for (const probe of planned.deleteProbes) {
    if (await remove(ctx, objectPath("v1", "pods", namespace, probe.name), probe.uid, { gracePeriodSeconds: 0 }))
      observeProbe(probe, ctx.now());
  }
  for (const probe of planned.createProbes) {
    if (await create(ctx, collectionPath("v1", "pods", namespace), probe)) {
      log.info({ probe: probe.metadata.name, node: probe.spec.nodeName }, "created probe pod");
    } else soon();
  }
  for (const stale of planned.staleJobs) {
    await remove(ctx, jobPath(namespace, stale.name), stale.uid, { propagationPolicy: "Background" });
    if (stale.expired)
      log.info({ job: stale.name }, "deleted a recorded migration Job: its ttlSecondsAfterFinished is over");
    else log.info({ job: stale.name }, "deleted a migration Job of a digest no longer wanted");
  }
  await writeStatus(ctx, migrator, planned, log);
  return requeueAfterMs === undefined ? {} : { requeueAfterMs };
}

/** What the caches hold for `migrator`: its namespace's pods and Jobs, the nodes those pods are on, owners, pins. */
function snapshotOf(ctx: ReconcileContext, migrator: Migrator): Snapshot {
  const namespace = migrator.metadata.namespace ?? "";
  const pods = ctx.caches.pods.list(namespace);
  const nodes = new Map<string, Node>();
  for (const node of new Set(pods.map((p) => p.spec.nodeName ?? ""))) {
    const found = node === "" ? undefined : ctx.caches.nodes.get(undefined, node);
    if (found !== undefined) nodes.set(node, found);
  }
  const { jobs, lookup } = ctx.caches;
  return {
    migrator,
    pods,
    jobs: jobs.list(namespace),
    owners: lookup,
    nodes,
    pins: ctx.pins,
    probeTimeoutSeconds: ctx.probeTimeoutSeconds,
    ...(ctx.jobDefaults !== undefined ? { jobDefaults: ctx.jobDefaults } : {}),
  };
}
