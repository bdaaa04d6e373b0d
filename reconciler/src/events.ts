// Kubernetes Events (core/v1) on the Migrator: one per condition transition, reason = the new
// condition reason, so `kubectl describe migrator` and Argo CD show what happened and when.
import { API_VERSION, KIND, REASONS } from "@digest-migrations/shared";
import type { KubeObject, Migrator } from "@digest-migrations/shared";

export const EVENT_COMPONENT = "digest-migrations";

/**
 * Event reason (not a condition): a migration Job was created with spec.image from another repository by
 * tag, so what it runs may change under that tag (see migrationImage in shared/src/job.ts).
 */
export const UNPINNED_IMAGE_REASON = "MigrationImageNotPinned";

const WARNING_REASONS: ReadonlySet<string> = new Set([
  REASONS.Failed,
  REASONS.ProbeFailed,
  REASONS.NoDigest,
  REASONS.PinFailed,
  REASONS.InvalidSpec,
  REASONS.TemplateNotFound,
  UNPINNED_IMAGE_REASON,
]);

export function buildEvent(
  migrator: Migrator,
  reason: string,
  message: string,
  instance: string,
  now: Date,
): KubeObject {
  const time = now.toISOString();
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: {
      generateName: `${migrator.metadata.name ?? "migrator"}.`,
      namespace: migrator.metadata.namespace ?? "",
    },
    involvedObject: {
      apiVersion: API_VERSION,
      kind: KIND,
      name: migrator.metadata.name,
      namespace: migrator.metadata.namespace,
      uid: migrator.metadata.uid,
      resourceVersion: migrator.metadata.resourceVersion,
    },
    reason,
    message: message.slice(0, 1024),
    type: WARNING_REASONS.has(reason) ? "Warning" : "Normal",
    firstTimestamp: time,
    lastTimestamp: time,
    count: 1,
    source: { component: EVENT_COMPONENT },
    reportingComponent: EVENT_COMPONENT,
    reportingInstance: instance,
  };
}
