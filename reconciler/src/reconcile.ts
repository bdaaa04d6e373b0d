// One reconcile of one Migrator, level-triggered: everything is read from the caches (never from
// the event that caused the visit), the decisions are the pure functions of shared/protocol.ts,
// and every write is idempotent (deterministic names, AlreadyExists/NotFound are success, deletes
// carry a uid precondition, the status is written with the cached resourceVersion). Any order of
// events, duplicates or a restart therefore converge to the same state.
//
// The story, top to bottom (DESIGN.md, "The digest protocol"):
//  1. the selected pods and, for each, the digest its gated container runs (pinned spec → status
//     imageID → a probe pod on its node);
//  2. pin gated pods to their digest (pod container images are mutable) before anything else;
//  3. create/delete probe pods as needed;
//  4. the wanted digest (the newest pods') and what to do about migration Jobs;
//  5. record successes, create, retry or delete Jobs;
//  6. write the status and an Event when the condition's reason changes.
import {
  ANNOTATIONS,
  API_VERSION,
  JobBuildError,
  LABELS,
  PLURAL,
  REASONS,
  SelectorError,
  buildMigrationJob,
  migrationImage,
  compileSelector,
  decideMigration,
  gatedContainer,
  isGated,
  migrationJobName,
  migratorLabelValue,
  migratorSpecProblem,
  pinImage,
  pinnedDigest,
  probeOutcome,
  probeServes,
  recordMigration,
  resolvePodDigest,
  templateForPod,
  wantedDigest,
} from "@digest-migrations/shared";
import type {
  Candidate,
  Container,
  JobView,
  KubeObject,
  Labels,
  Migrator,
  MigratorStatus,
  OwnerLookup,
  Pod,
  Resolution,
} from "@digest-migrations/shared";
import { UNPINNED_IMAGE_REASON, buildEvent } from "./events.ts";
import { RETRY_HANDLED_ANNOTATION, isJobOf, jobView } from "./jobs.ts";
import {
  NotLeaderError,
  STRATEGIC_MERGE_PATCH,
  collectionPath,
  isAlreadyExists,
  isConflict,
  isNotFound,
  isRefused,
  objectPath,
} from "./kube.ts";
import type { Kube } from "./kube.ts";
import type { Logger } from "./log.ts";
import { migrationsFailed, migrationsStarted, migrationsSucceeded, probeDuration } from "./metrics.ts";
import { PROBE_CONTAINER, PROBE_ROLE, buildProbePod, probeKeyOf, probeName } from "./probe.ts";
import type { ProbeKey } from "./probe.ts";
import { nextStatus, readyReason, statusChanged } from "./status.ts";
import type { StatusInput } from "./status.ts";

/** Read access to one cache. */
export interface Store<T> {
  get(namespace: string | undefined, name: string): T | undefined;
  list(namespace?: string): T[];
}

export interface Caches {
  migrators: Store<Migrator>;
  pods: Store<Pod>;
  jobs: Store<KubeObject>;
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
  /** A probe still pulling after this long is reported as ProbeFailed. */
  probeTimeoutSeconds: number;
  /** Pins written by this process that the pod cache may not show yet: pod uid → image. */
  pins: Map<string, { container: string; image: string }>;
}

export interface ReconcileResult {
  /** Visit again after this many milliseconds (the state may change without an event). */
  requeueAfterMs?: number;
}

/** A write lost against a newer object: reconcile again from the (newer) cache. */
export class StaleCacheError extends Error {
  override name = "StaleCacheError";
}

const SAFETY_REQUEUE_MS = 30_000;

export function migratorPath(namespace: string, name: string): string {
  return objectPath(API_VERSION, PLURAL, namespace, name);
}

/** Pods the reconciler created itself (migration Job pods, probe pods) are never application pods. */
export function isOwnPod(pod: Pod): boolean {
  return pod.metadata.labels?.[LABELS.role] !== undefined;
}

/** Live pods: not being deleted and not finished. */
function isLive(pod: Pod): boolean {
  return (
    pod.metadata.deletionTimestamp === undefined && pod.status?.phase !== "Succeeded" && pod.status?.phase !== "Failed"
  );
}

/** Compiled selectors of a Migrator, or the reason its spec is invalid (shared/src/spec.ts, then the selectors). */
export function selectorsOf(
  migrator: Migrator,
):
  | { ok: true; select: (l: Labels | undefined) => boolean; template: (l: Labels | undefined) => boolean }
  | { ok: false; message: string } {
  const where = `Migrator ${migrator.metadata.namespace}/${migrator.metadata.name}`;
  const problem = migratorSpecProblem(migrator.spec);
  if (problem !== undefined) return { ok: false, message: `${where} ${problem}` };
  try {
    return {
      ok: true,
      select: compileSelector(migrator.spec.selector, `${where} spec.selector`),
      template: compileSelector(migrator.spec.templateSelector, `${where} spec.templateSelector`),
    };
  } catch (error) {
    if (error instanceof SelectorError) return { ok: false, message: error.message };
    throw error;
  }
}

/** The pods a Migrator selects: live application pods in its namespace whose labels match. */
export function selectedPods(caches: Caches, migrator: Migrator, select: (l: Labels | undefined) => boolean): Pod[] {
  return caches.pods
    .list(migrator.metadata.namespace ?? "")
    .filter((pod) => !isOwnPod(pod) && isLive(pod) && select(pod.metadata.labels));
}

interface PodInfo {
  pod: Pod;
  container: Container;
  candidate: Candidate;
  probeFailure?: string;
}

export async function reconcileMigrator(
  ctx: ReconcileContext,
  namespace: string,
  name: string,
): Promise<ReconcileResult> {
  const migrator = ctx.caches.migrators.get(namespace, name);
  // Gone: its Jobs and probes are removed by the garbage collector (ownerReferences).
  if (migrator === undefined || migrator.metadata.deletionTimestamp !== undefined) return {};
  const log = ctx.log.child({ migrator: `${namespace}/${name}` });
  const now = ctx.now();

  const selectors = selectorsOf(migrator);
  if (!selectors.ok) {
    await writeStatus(ctx, migrator, migrator.status, {
      ready: false,
      reason: REASONS.InvalidSpec,
      message: selectors.message,
    });
    return {};
  }

  // 1. Selected pods and their digests.
  const infos: PodInfo[] = [];
  const problems: string[] = [];
  const probesWanted = new Map<string, ProbeKey>();
  const probesInUse = new Set<string>();
  const pins: { pod: Pod; container: string; image: string }[] = [];
  let requeueAfterMs = SAFETY_REQUEUE_MS;
  for (const pod of selectedPods(ctx.caches, migrator, selectors.select)) {
    let container: Container;
    try {
      container = gatedContainer(migrator.spec, pod.spec);
    } catch (error) {
      problems.push(`pod ${pod.metadata.name}: ${(error as Error).message}`);
      continue;
    }
    const gated = isGated(pod, name);
    const pinnedHere = ctx.pins.get(pod.metadata.uid ?? "");
    const cachedImage = container.image;
    if (
      pinnedHere !== undefined &&
      pinnedHere.container === container.name &&
      pinnedDigest(cachedImage) === undefined
    ) {
      // The pin is written but the cache has not caught up: never resolve this pod again.
      container = { ...container, image: pinnedHere.image };
    } else if (pinnedHere !== undefined) {
      ctx.pins.delete(pod.metadata.uid ?? "");
    }
    const view: Pod = container.image === cachedImage ? pod : withImage(pod, container);
    let resolution: Resolution = resolvePodDigest(view, container.name, gated);
    let probeFailure: string | undefined;
    if (gated && resolution.kind === "digest" && resolution.source === "status") {
      // Held again after its app container ran once (e.g. a restarted sandbox): pin what it ran.
      pins.push({ pod, container: container.name, image: pinImage(container.image ?? "", resolution.digest) });
    }
    if (resolution.kind === "needsProbe" && pod.spec.nodeName) {
      const key = probeKeyOf(pod, container);
      const probeNameValue = probeName(name, key);
      const probe = ctx.caches.pods.get(namespace, probeNameValue);
      const ours = probe !== undefined && isProbeOf(probe, migrator) && probe.metadata.deletionTimestamp === undefined;
      if (ours && probeServes(probe.metadata.creationTimestamp, pod.metadata.creationTimestamp)) {
        const outcome = probeOutcome(probe, PROBE_CONTAINER);
        if (outcome.kind === "digest") {
          resolution = { kind: "digest", digest: outcome.digest, source: "probe" };
          if (gated)
            pins.push({ pod, container: container.name, image: pinImage(container.image ?? "", outcome.digest) });
        } else if (outcome.kind === "noDigest") {
          resolution = { kind: "noDigest", message: outcome.message };
        } else {
          probesInUse.add(probeNameValue);
          const age = (now.getTime() - Date.parse(probe.metadata.creationTimestamp ?? now.toISOString())) / 1000;
          // A probe is never recreated: the kubelet retries a failed pull with back-off
          // (ImagePullBackOff), so once the registry or the tag is there the same probe answers and
          // ProbeFailed clears by itself; a new pod would only restart that back-off from zero.
          if (outcome.kind === "failed") probeFailure = outcome.message;
          else if (age > ctx.probeTimeoutSeconds) {
            probeFailure = `${outcome.message} for ${Math.round(age)} s (more than ${ctx.probeTimeoutSeconds} s)`;
          } else
            requeueAfterMs = Math.min(requeueAfterMs, Math.max(1000, (ctx.probeTimeoutSeconds - age) * 1000 + 500));
        }
      } else if (!ours || probe === undefined) {
        // No probe, or one being deleted (then creating waits for AlreadyExists to clear).
        probesWanted.set(probeNameValue, key);
      }
      // An existing probe that started before this pod existed cannot answer for it: once it
      // has served its own pods it is deleted (below) and a fresh one is created.
    }
    const candidate: Candidate = { name: pod.metadata.name ?? "", resolution };
    if (pod.metadata.creationTimestamp !== undefined) candidate.creationTimestamp = pod.metadata.creationTimestamp;
    const owner = templateForPod(pod, ctx.caches.lookup);
    if (owner.ok && owner.revision !== undefined) candidate.revision = owner.revision;
    const info: PodInfo = { pod, container, candidate };
    if (probeFailure !== undefined) info.probeFailure = probeFailure;
    infos.push(info);
  }

  // 2. Pin gated pods to the digest their node resolved, before anything can release them. A pod
  // deleted or replaced meanwhile is skipped (the cache will show it); a refusal (an admission policy
  // against image changes, RBAC) is shown on the Migrator: that pod can never be released.
  const refusedPins: string[] = [];
  for (const pin of pins) {
    const pod = `${namespace}/${pin.pod.metadata.name}`;
    try {
      await pinPod(ctx, pin.pod, pin.container, pin.image);
    } catch (error) {
      if (isNotFound(error) || isConflict(error)) {
        log.debug({ pod }, "pod gone or replaced before its pin; skipped");
        continue;
      }
      if (!isRefused(error)) throw error;
      refusedPins.push(
        `the API server refused to pin container ${pin.container} of pod ${pin.pod.metadata.name} to ${pin.image}: ${error.message}`,
      );
      log.warn({ pod, image: pin.image, err: error }, "pin refused; the pod stays gated");
      continue;
    }
    log.info({ pod, image: pin.image }, "pinned pod image to its digest");
  }

  // 3. Probes: delete those no pod needs any more (their pods are pinned or gone), create missing ones.
  for (const probe of ctx.caches.pods.list(namespace)) {
    const probeNameValue = probe.metadata.name ?? "";
    if (!isProbeOf(probe, migrator) || probe.metadata.deletionTimestamp !== undefined) continue;
    if (probesInUse.has(probeNameValue)) continue;
    const removed = await ctx.kube
      .remove(objectPath("v1", "pods", namespace, probeNameValue), {
        uid: probe.metadata.uid ?? "",
        gracePeriodSeconds: 0,
      })
      .then(() => true, ignoreConflict);
    if (removed) observeProbe(probe, now);
    if (probesWanted.has(probeNameValue)) requeueAfterMs = Math.min(requeueAfterMs, 1000);
  }
  for (const [probeNameValue, key] of probesWanted) {
    if (ctx.caches.pods.get(namespace, probeNameValue) !== undefined) continue;
    try {
      await ctx.kube.create(collectionPath("v1", "pods", namespace), buildProbePod(migrator, key));
      log.info({ probe: probeNameValue, node: key.node, image: key.image }, "created probe pod");
    } catch (error) {
      if (!isAlreadyExists(error)) throw error;
      requeueAfterMs = Math.min(requeueAfterMs, 1000);
    }
  }

  // 4. The wanted digest and the Job decision.
  const wanted = wantedDigest(infos.map((i) => i.candidate));
  const newest = wanted.kind === "none" ? undefined : infos.find((i) => i.candidate.name === wanted.pod);
  const jobs = ctx.caches.jobs
    .list(namespace)
    .filter((job) => isJobOf(job, migrator) && job.metadata.deletionTimestamp === undefined);
  const views = jobs.map(jobView);
  const uidOf = new Map(jobs.map((job) => [job.metadata.name ?? "", job.metadata.uid ?? ""]));
  const retry = migrator.metadata.annotations?.[ANNOTATIONS.retry] ?? "";
  const decision = decideMigration({
    wanted,
    status: migrator.status,
    jobs: views,
    retry,
    jobName: (digest) => migrationJobName(name, digest),
  });

  const input: StatusInput = { ready: decision.ready, reason: decision.reason, message: decision.message };
  if (wanted.kind === "pending" && wanted.reason === REASONS.Probing && newest?.probeFailure !== undefined) {
    input.reason = REASONS.ProbeFailed;
    input.message = newest.probeFailure;
  }
  if (wanted.kind === "none" && problems.length > 0) {
    input.reason = REASONS.InvalidSpec;
    input.message = problems.slice(0, 3).join("; ");
  }
  if (wanted.kind === "digest" && newest !== undefined) {
    input.currentDigest = wanted.digest;
    input.currentImage = pinImage(newest.container.image ?? "", wanted.digest);
  }
  if (decision.currentJob !== undefined) input.currentJob = decision.currentJob;
  /** A refused pin outranks every other reason: those pods stay gated whatever else happens. */
  const pinFailure = (): void => {
    if (refusedPins.length === 0) return;
    input.ready = false;
    input.reason = REASONS.PinFailed;
    input.message = refusedPins.slice(0, 3).join("; ");
  };

  // 5. Jobs.
  let status: MigratorStatus | undefined = migrator.status;
  const action = decision.action;
  if (action.kind === "record") {
    const job = action.job;
    const record = {
      digest: job.digest ?? "",
      image: job.image ?? "",
      job: job.name,
      completionTime: job.completionTime ?? now.toISOString(),
    };
    status = recordMigration(status, record);
    // The record is written first; the next visit (at once) decides from the recorded state.
    const after = decideMigration({ wanted, status, jobs: views, retry, jobName: (d) => migrationJobName(name, d) });
    input.ready = after.ready;
    input.reason = after.reason;
    input.message = after.message;
    if (after.currentJob !== undefined) input.currentJob = after.currentJob;
    pinFailure();
    await writeStatus(ctx, migrator, status, input);
    migrationsSucceeded.inc({ namespace, migrator: name });
    log.info({ digest: record.digest, job: job.name }, "migration succeeded; digest recorded");
    return { requeueAfterMs: 0 };
  }
  if (action.kind === "create" || action.kind === "retry") {
    if (action.kind === "retry") {
      await ctx.kube
        .remove(objectPath("batch/v1", "jobs", namespace, action.job.name), {
          propagationPolicy: "Background",
          uid: uidOf.get(action.job.name) ?? "",
        })
        .catch(ignoreConflict);
      log.info({ digest: action.digest, job: action.job.name, retry }, "deleted the failed migration Job to retry it");
    }
    const created = await createJob(ctx, migrator, infos, action.digest, retry, selectors.template, log);
    if (created.ok === false) {
      input.ready = false;
      input.reason = created.reason;
      input.message = created.message;
    } else if (created.exists) {
      requeueAfterMs = Math.min(requeueAfterMs, 1000);
    }
  }
  for (const stale of decision.stale) {
    await ctx.kube
      .remove(objectPath("batch/v1", "jobs", namespace, stale), {
        propagationPolicy: "Background",
        uid: uidOf.get(stale) ?? "",
      })
      .catch(ignoreConflict);
    log.info({ job: stale }, "deleted a migration Job of a digest no longer wanted");
  }

  // 6. Status and Events.
  pinFailure();
  await writeStatus(ctx, migrator, status, input);
  return { requeueAfterMs };
}

function withImage(pod: Pod, container: Container): Pod {
  return {
    ...pod,
    spec: { ...pod.spec, containers: pod.spec.containers.map((c) => (c.name === container.name ? container : c)) },
  };
}

function isProbeOf(pod: Pod, migrator: Migrator): boolean {
  return (
    pod.metadata.labels?.[LABELS.role] === PROBE_ROLE &&
    pod.metadata.labels?.[LABELS.migrator] === migratorLabelValue(migrator.metadata.name ?? "") &&
    (pod.metadata.ownerReferences ?? []).some((ref) => ref.uid === migrator.metadata.uid)
  );
}

/** Probe outcomes as the `result` label of digest_migrations_probe_duration_seconds. */
const PROBE_RESULTS = {
  digest: "resolved",
  noDigest: "no_digest",
  failed: "pull_failed",
  pending: "abandoned",
} as const;

/**
 * Records a probe being removed: from its creation to its removal (the time it held a place on the node,
 * image pull included; one-second resolution, as creationTimestamp has), by what it had found by then.
 */
function observeProbe(probe: Pod, now: Date): void {
  const created = Date.parse(probe.metadata.creationTimestamp ?? "");
  if (Number.isNaN(created)) return;
  const result = PROBE_RESULTS[probeOutcome(probe, PROBE_CONTAINER).kind];
  probeDuration.observe({ result }, Math.max(0, (now.getTime() - created) / 1000));
}

/** A uid precondition failed: the object was replaced meanwhile, which is what we wanted gone. */
function ignoreConflict(error: unknown): boolean {
  if (isConflict(error)) return false;
  throw error;
}

/**
 * Sets the gated container's image with a strategic merge patch keyed by container name (the
 * API server allows changing `spec.containers[*].image` of an existing pod). The pod's uid is a
 * precondition of the patch, so a pod recreated under the same name is never pinned by mistake.
 */
async function pinPod(ctx: ReconcileContext, pod: Pod, container: string, image: string): Promise<void> {
  const namespace = pod.metadata.namespace ?? "";
  const patch = {
    metadata: { uid: pod.metadata.uid },
    spec: { containers: [{ name: container, image }] },
  };
  await ctx.kube.patch(objectPath("v1", "pods", namespace, pod.metadata.name ?? ""), patch, STRATEGIC_MERGE_PATCH);
  ctx.pins.set(pod.metadata.uid ?? "", { container, image });
}

type CreateJobResult = { ok: true; exists: boolean } | { ok: false; reason: string; message: string };

/**
 * Creates the Job of `digest`, cloned from the pod template of the newest selected pod that runs
 * `digest` and matches spec.templateSelector. AlreadyExists means it was started already: fine.
 */
async function createJob(
  ctx: ReconcileContext,
  migrator: Migrator,
  infos: readonly PodInfo[],
  digest: string,
  retry: string,
  templateSelect: (labels: Labels | undefined) => boolean,
  log: Logger,
): Promise<CreateJobResult> {
  const namespace = migrator.metadata.namespace ?? "";
  const runners = infos
    .filter((i) => i.candidate.resolution.kind === "digest" && i.candidate.resolution.digest === digest)
    .filter((i) => templateSelect(i.pod.metadata.labels));
  const problems: string[] = [];
  for (const info of runners) {
    const found = templateForPod(info.pod, ctx.caches.lookup);
    if (!found.ok) {
      problems.push(found.message);
      continue;
    }
    let job: KubeObject;
    try {
      job = buildMigrationJob({ migrator, template: found.template, digest, image: info.container.image ?? "" });
    } catch (error) {
      if (error instanceof JobBuildError) return { ok: false, reason: REASONS.InvalidSpec, message: error.message };
      throw error;
    }
    if (retry !== "") {
      job.metadata.annotations = { ...job.metadata.annotations, [RETRY_HANDLED_ANNOTATION]: retry };
    }
    try {
      await ctx.kube.create(collectionPath("batch/v1", "jobs", namespace), job);
    } catch (error) {
      if (isAlreadyExists(error)) return { ok: true, exists: true };
      throw error;
    }
    migrationsStarted.inc({ namespace, migrator: migrator.metadata.name ?? "" });
    const image = migrationImage(migrator.spec.image, info.container.image ?? "", digest);
    if (image.pinning === "unpinned") {
      await recordEvent(
        ctx,
        migrator,
        UNPINNED_IMAGE_REASON,
        `Job ${job.metadata.name ?? ""} runs spec.image ${image.image} as written: it is another repository than the application's, so the migration of ${digest} cannot be pinned to that digest and may run other bytes if the tag moves; pin spec.image by digest to avoid this`,
      );
    }
    log.info(
      { digest, job: job.metadata.name, template: `${found.owner.kind}/${found.owner.name}` },
      "created migration Job",
    );
    return { ok: true, exists: false };
  }
  return {
    ok: false,
    reason: REASONS.TemplateNotFound,
    message:
      runners.length === 0
        ? `no selected pod running ${digest} matches spec.templateSelector`
        : `no pod template found for ${digest}: ${problems.slice(0, 2).join("; ")}`,
  };
}

/** Writes the status (if it changed) through the status subresource, and an Event on a new reason. */
async function writeStatus(
  ctx: ReconcileContext,
  migrator: Migrator,
  base: MigratorStatus | undefined,
  input: StatusInput,
): Promise<void> {
  const now = ctx.now();
  const next = nextStatus(base, migrator, input, now);
  if (!statusChanged(migrator.status, next)) return;
  const namespace = migrator.metadata.namespace ?? "";
  const name = migrator.metadata.name ?? "";
  const body = {
    apiVersion: migrator.apiVersion,
    kind: migrator.kind,
    metadata: migrator.metadata,
    spec: migrator.spec,
    status: next,
  };
  try {
    await ctx.kube.replace(`${migratorPath(namespace, name)}/status`, body);
  } catch (error) {
    if (isConflict(error))
      throw new StaleCacheError(`Migrator ${namespace}/${name}: status write conflicted; the cache is behind`);
    throw error;
  }
  const before = readyReason(migrator.status);
  if (before !== input.reason) {
    if (input.reason === REASONS.Failed) migrationsFailed.inc({ namespace, migrator: name });
    ctx.log.info({ migrator: `${namespace}/${name}`, reason: input.reason, was: before }, input.message);
    await recordEvent(ctx, migrator, input.reason, input.message);
  }
}

/** Records an Event on the Migrator. */
async function recordEvent(ctx: ReconcileContext, migrator: Migrator, reason: string, message: string): Promise<void> {
  const namespace = migrator.metadata.namespace ?? "";
  try {
    await ctx.kube.create(
      collectionPath("v1", "events", namespace),
      buildEvent(migrator, reason, message, ctx.identity, ctx.now()),
    );
  } catch (error) {
    if (error instanceof NotLeaderError) throw error;
    // An Event is a courtesy: failing to write one must not block the protocol. It is logged.
    ctx.log.warn(
      { err: error, migrator: `${namespace}/${migrator.metadata.name ?? ""}`, reason },
      "could not record an Event",
    );
  }
}

export type { JobView };
