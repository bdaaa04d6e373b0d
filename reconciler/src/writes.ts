// The writes a Plan asks for, each with its guard: a pin carries the pod's uid (a pod recreated under
// the same name is never pinned by mistake), deletes carry the object's uid (a Conflict means it was
// replaced, which is what we wanted gone), creates use deterministic names (AlreadyExists means it was
// created already), the status is written with the cached resourceVersion (a Conflict means the cache is
// behind: StaleCacheError). The client refuses every write once this replica stops leading.
import { API_VERSION, MANAGED_BY, PLURAL, REASONS } from "@digest-migrations/shared";
import type { KubeObject, Migrator, Pin, Plan, PlannedEvent, ProbeDeletion } from "@digest-migrations/shared";
import { buildEvent } from "./events.ts";
import { NotLeaderError, STRATEGIC_MERGE_PATCH, collectionPath, isAlreadyExists, isConflict } from "./kube.ts";
import { isNotFound, isRefused, objectPath } from "./kube.ts";
import type { Logger } from "./log.ts";
import { migrationsFailed, migrationsSucceeded, probeDuration } from "./metrics.ts";
import type { ReconcileContext } from "./reconcile.ts";

/** The field manager of the pin (metadata.managedFields of a pinned pod). */
export const PIN_FIELD_MANAGER = MANAGED_BY;

/** A write lost against a newer object: reconcile again from the (newer) cache. */
export class StaleCacheError extends Error {
  override name = "StaleCacheError";
}

export function migratorPath(namespace: string, name: string): string {
  return objectPath(API_VERSION, PLURAL, namespace, name);
}

export function jobPath(namespace: string, name: string): string {
  return objectPath("batch/v1", "jobs", namespace, name);
}

/**
 * Sets the gated container's image with a strategic merge patch keyed by container name (the API
 * server allows changing `spec.containers[*].image` of an existing pod), the pod's uid a precondition so
 * a pod recreated under the same name is never pinned by mistake. A pod gone or replaced is skipped (the
 * cache will show it); a refusal (an admission policy against image changes, RBAC) is remembered, so
 * the plan says PinFailed: that pod can never be released.
 */
export async function pinPod(
  ctx: ReconcileContext,
  namespace: string,
  pin: Pin,
  log: Logger,
): Promise<Pin["expect"] | "gone"> {
  const pod = `${namespace}/${pin.name}`;
  const patch = { metadata: { uid: pin.uid }, spec: { containers: [{ name: pin.container, image: pin.image }] } };
  try {
    // fieldManager: the pinned image is recorded in managedFields as this manager's, which is what Argo CD's
    // ignoreDifferences.managedFieldsManagers names to leave a git-managed bare Pod's pin alone.
    await ctx.kube.patch(objectPath("v1", "pods", namespace, pin.name), patch, STRATEGIC_MERGE_PATCH, {
      fieldManager: PIN_FIELD_MANAGER,
    });
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
export async function create(ctx: ReconcileContext, path: string, object: KubeObject): Promise<boolean> {
  try {
    await ctx.kube.create(path, object);
    return true;
  } catch (error) {
    if (isAlreadyExists(error)) return false;
    throw error;
  }
}

/** Deletes the object at `path` if it still has `uid`; false when it was replaced meanwhile (a Conflict). */
export async function remove(
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
export function observeProbe(probe: ProbeDeletion, now: Date): void {
  const created = Date.parse(probe.creationTimestamp ?? "");
  if (Number.isNaN(created)) return;
  probeDuration.observe({ result: PROBE_RESULTS[probe.outcome] }, Math.max(0, (now.getTime() - created) / 1000));
}

/** Writes the planned status (if it changed) through the status subresource, then its Events. */
export async function writeStatus(
  ctx: ReconcileContext,
  migrator: Migrator,
  planned: Plan,
  log: Logger,
): Promise<void> {
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
export async function recordEvent(ctx: ReconcileContext, migrator: Migrator, event: PlannedEvent): Promise<void> {
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
