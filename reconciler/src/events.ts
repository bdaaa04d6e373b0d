// Kubernetes Events (core/v1) on the Migrator: the plan says which (one per change of the Ready
// reason, plus the MigrationImageNotPinned warning of a new Job) and of which type; this builds the
// object, so `kubectl describe migrator` and Argo CD show what happened and when.
import { API_VERSION, KIND } from "@digest-migrations/shared";
import type { KubeObject, Migrator, PlannedEvent } from "@digest-migrations/shared";

export const EVENT_COMPONENT = "digest-migrations";

export function buildEvent(migrator: Migrator, event: PlannedEvent, instance: string, now: Date): KubeObject {
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
    reason: event.reason,
    message: event.message.slice(0, 1024),
    type: event.type,
    firstTimestamp: time,
    lastTimestamp: time,
    count: 1,
    source: { component: EVENT_COMPONENT },
    reportingComponent: EVENT_COMPONENT,
    reportingInstance: instance,
  };
}
