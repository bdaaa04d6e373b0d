// The Migrator's status as the decision describes it: the Ready and MigrationsReady conditions
// (reason from REASONS, a message that says what happens now), currentDigest/currentImage/
// currentJob and observedGeneration. Written through the status subresource with the cached
// resourceVersion (optimistic concurrency: a 409 means the cache is behind; reconcile again).
import { findCondition, sameConditions, setCondition } from "./conditions.ts";
import { CONDITION_MIGRATIONS_READY, CONDITION_READY, REASONS } from "./migrator.ts";
import type { Migrator, MigratorStatus } from "./migrator.ts";

export interface StatusInput {
  ready: boolean;
  reason: string;
  message: string;
  currentDigest?: string;
  currentImage?: string;
  currentJob?: string;
}

/**
 * The next status. MigrationsReady is True only when the wanted digest is migrated; Ready is the
 * Migrator's health as a whole, also True while no pods are selected yet (nothing to migrate is
 * not a problem).
 */
export function nextStatus(
  base: MigratorStatus | undefined,
  migrator: Migrator,
  input: StatusInput,
  now: Date,
): MigratorStatus {
  const generation = migrator.metadata.generation;
  const status: MigratorStatus = { ...base };
  if (generation !== undefined) status.observedGeneration = generation;
  if (input.currentDigest !== undefined) status.currentDigest = input.currentDigest;
  if (input.currentImage !== undefined) status.currentImage = input.currentImage;
  if (input.currentJob !== undefined) status.currentJob = input.currentJob;
  const readyOverall = input.ready || input.reason === REASONS.WaitingForPods;
  let conditions = setCondition(
    status.conditions,
    {
      type: CONDITION_READY,
      status: readyOverall ? "True" : "False",
      reason: input.reason,
      message: input.message,
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
    },
    now,
  );
  conditions = setCondition(
    conditions,
    {
      type: CONDITION_MIGRATIONS_READY,
      status: input.ready ? "True" : "False",
      reason: input.reason,
      message: input.message,
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
    },
    now,
  );
  status.conditions = conditions;
  return status;
}

/** Does writing `next` change anything compared with `current`? */
export function statusChanged(current: MigratorStatus | undefined, next: MigratorStatus): boolean {
  const a = current ?? {};
  if (!sameConditions(a.conditions, next.conditions)) return true;
  const strip = (s: MigratorStatus): string => canonical({ ...s, conditions: undefined });
  return strip(a) !== strip(next);
}

/** JSON with object keys sorted (the API server returns custom resources with sorted keys). */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)),
        )
      : v,
  );
}

/** The Ready condition's reason, if any. */
export function readyReason(status: MigratorStatus | undefined): string | undefined {
  return findCondition(status?.conditions, CONDITION_READY)?.reason;
}
