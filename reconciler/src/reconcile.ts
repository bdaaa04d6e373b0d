// One reconcile of one Migrator: snapshot → plan → execute. Level-triggered: the snapshot is read from
// the caches (never from the event that caused the visit), the decisions are shared/src/plan.ts, and
// this file only carries the Plan out and reports it. Every write is idempotent and guarded: names are
// deterministic (AlreadyExists is success), deletes carry a uid precondition (a Conflict means the object
// was replaced, which is what we wanted gone), a pin carries the pod's uid, the status is written with the
// cached resourceVersion (a Conflict means the cache is behind: StaleCacheError, reconcile again), and
// the client refuses every write once this replica stops leading (the leadership fence). Any order of
// events, duplicates or a restart therefore converge to the same state.
import { API_VERSION, PLURAL, REASONS, plan } from "@digest-migrations/shared";
import type {
  KubeObject,
  Migrator,
  Node,
  OwnerLookup,
  Pin,
  PinRecord,
  Plan,
  PlannedEvent,
  Pod,
  ProbeDeletion,
  Snapshot,
} from "@digest-migrations/shared";
import { buildEvent } from "./events.ts";
import { NotLeaderError, STRATEGIC_MERGE_PATCH, collectionPath, isAlreadyExists, isConflict } from "./kube.ts";
import { isNotFound, isRefused, objectPath } from "./kube.ts";
import type { Kube } from "./kube.ts";
import type { Logger } from "./log.ts";
import { migrationsFailed, migrationsStarted, migrationsSucceeded, probeDuration } from "./metrics.ts";

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
  /** A probe without an answer after this long is reported as ProbeFailed. */
  probeTimeoutSeconds: number;
  /** Pins written or refused by this process that the pod cache may not show yet, by pod uid. */
  pins: Map<string, PinRecord>;
}

export interface ReconcileResult {
  /** Visit again after this many milliseconds (the state may change without an event). */
  requeueAfterMs?: number;
}

/** A write lost against a newer object: reconcile again from the (newer) cache. */
export class StaleCacheError extends Error {
  override name = "StaleCacheError";
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
  for (const probe of planned.deleteProbes) {
    if (await remove(ctx, objectPath("v1", "pods", namespace, probe.name), probe.uid, { gracePeriodSeconds: 0 }))
      observeProbe(probe, ctx.now());
  }
  for (const probe of planned.createProbes) {
    if (await create(ctx, collectionPath("v1", "pods", namespace), probe)) {
      log.info({ probe: probe.metadata.name, node: probe.spec.nodeName }, "created probe pod");
    } else soon();
  }
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
  for (const stale of planned.staleJobs) {
    await remove(ctx, jobPath(namespace, stale.name), stale.uid, { propagationPolicy: "Background" });
    log.info({ job: stale.name }, "deleted a migration Job of a digest no longer wanted");
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
  };
}

export function migratorPath(namespace: string, name: string): string {
  return objectPath(API_VERSION, PLURAL, namespace, name);
}

function jobPath(namespace: string, name: string): string {
  return objectPath("batch/v1", "jobs", namespace, name);
}

/**
 * Sets the gated container's image with a strategic merge patch keyed by container name (the API
 * server allows changing `spec.containers[*].image` of an existing pod), the pod's uid a precondition so
 * a pod recreated under the same name is never pinned by mistake. A pod gone or replaced is skipped (the
 * cache will show it); a refusal (an admission policy against image changes, RBAC) is remembered, so
 * the plan says PinFailed: that pod can never be released.
 */
async function pinPod(
  ctx: ReconcileContext,
  namespace: string,
  pin: Pin,
  log: Logger,
): Promise<Pin["expect"] | "gone"> {
  const pod = `${namespace}/${pin.name}`;
  const patch = { metadata: { uid: pin.uid }, spec: { containers: [{ name: pin.container, image: pin.image }] } };
  try {
    await ctx.kube.patch(objectPath("v1", "pods", namespace, pin.name), patch, STRATEGIC_MERGE_PATCH);
  } catch (error) {
    if (isNotFound(error) || isConflict(error)) {
      log.debug({ pod }, "pod gone or replaced before its pin; skipped");
      return "gone";
    }
    if (!isRefused(error)) throw error;
    ctx.pins.set(pin.uid, { container: pin.container, image: pin.image, refused: error.message });
    log.warn({ pod, image: pin.image, err: error }, "pin refused; the pod stays gated");
    return "refused";
  }
  ctx.pins.set(pin.uid, { container: pin.container, image: pin.image });
  log.info({ pod, image: pin.image }, "pinned pod image to its digest");
  return "pinned";
}

/** Creates `object`; false when it exists already (its name is deterministic: someone created it). */
async function create(ctx: ReconcileContext, path: string, object: KubeObject): Promise<boolean> {
  try {
    await ctx.kube.create(path, object);
    return true;
  } catch (error) {
    if (isAlreadyExists(error)) return false;
    throw error;
  }
}

/** Deletes the object at `path` if it still has `uid`; false when it was replaced meanwhile (a Conflict). */
async function remove(
  ctx: ReconcileContext,
  path: string,
  uid: string,
  options: { gracePeriodSeconds?: number; propagationPolicy?: string },
): Promise<boolean> {
  try {
    await ctx.kube.remove(path, { ...options, uid });
    return true;
  } catch (error) {
    if (isConflict(error)) return false;
    throw error;
  }
}

/** Probe outcomes as the `result` label of digest_migrations_probe_duration_seconds. */
const PROBE_RESULTS: Record<ProbeDeletion["outcome"], string> = {
  digest: "resolved",
  noDigest: "no_digest",
  failed: "failed",
  unsupported: "unsupported_runtime",
  ended: "ended",
  pending: "abandoned",
};

/** A probe removed: its lifetime (image pull included; one-second resolution, as creationTimestamp has). */
function observeProbe(probe: ProbeDeletion, now: Date): void {
  const created = Date.parse(probe.creationTimestamp ?? "");
  if (Number.isNaN(created)) return;
  probeDuration.observe({ result: PROBE_RESULTS[probe.outcome] }, Math.max(0, (now.getTime() - created) / 1000));
}

/** Writes the planned status (if it changed) through the status subresource, then its Events. */
async function writeStatus(ctx: ReconcileContext, migrator: Migrator, planned: Plan, log: Logger): Promise<void> {
  if (planned.status === undefined) return;
  const namespace = migrator.metadata.namespace ?? "";
  const name = migrator.metadata.name ?? "";
  const { apiVersion, kind, metadata, spec } = migrator;
  try {
    await ctx.kube.replace(`${migratorPath(namespace, name)}/status`, {
      apiVersion,
      kind,
      metadata,
      spec,
      status: planned.status,
    });
  } catch (error) {
    if (isConflict(error))
      throw new StaleCacheError(`Migrator ${namespace}/${name}: status write conflicted; the cache is behind`);
    throw error;
  }
  if (planned.job.kind === "record") {
    migrationsSucceeded.inc({ namespace, migrator: name });
    log.info(
      { digest: planned.job.record.digest, job: planned.job.record.job },
      "migration succeeded; digest recorded",
    );
  }
  for (const event of planned.events) {
    if (event.reason === REASONS.Failed) migrationsFailed.inc({ namespace, migrator: name });
    log.info({ reason: event.reason }, event.message);
    await recordEvent(ctx, migrator, event);
  }
}

/** Records an Event on the Migrator: a courtesy, so failing to write one is logged, never fatal. */
async function recordEvent(ctx: ReconcileContext, migrator: Migrator, event: PlannedEvent): Promise<void> {
  const namespace = migrator.metadata.namespace ?? "";
  try {
    await ctx.kube.create(
      collectionPath("v1", "events", namespace),
      buildEvent(migrator, event, ctx.identity, ctx.now()),
    );
  } catch (error) {
    if (error instanceof NotLeaderError) throw error;
    const reason = event.reason;
    ctx.log.warn(
      { err: error, migrator: `${namespace}/${migrator.metadata.name ?? ""}`, reason },
      "could not record an Event",
    );
  }
}
