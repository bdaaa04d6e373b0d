// What the caches keep of each object. A pod as the API server returns it carries bookkeeping the
// reconciler never reads: metadata.managedFields (server-side apply's field ownership, often as large
// as the rest of the object) and, on objects applied with `kubectl apply` or Argo CD's client-side
// apply, the kubectl.kubernetes.io/last-applied-configuration annotation (a full copy of the object
// as applied). Dropping both on entry roughly halves what thousands of cached pods and ReplicaSets
// cost, and changes no decision: nothing in the reconciler or shared/ reads them.
//
// Migrators keep the annotation: their status is written with the cached metadata, and the annotation
// is the user's. managedFields may go everywhere: an update that omits it leaves the server's as is.
//
// Nodes are cached for one field, status.nodeInfo (containerRuntimeVersion explains a probe's failure);
// the rest of a Node — its image list, conditions, addresses, capacity, annotations — can be tens of
// kilobytes and is dropped.
//
// Pods keep their whole spec (a bare pod's spec is the migration Job's template) and, of their
// status, what the decisions read: phase, reason, message and the container statuses. Conditions,
// addresses, start time and QoS class go: thousands of gated pods each carry four conditions.
import type { KubeObject } from "@digest-migrations/shared";
import { KIND } from "@digest-migrations/shared";

export const LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration";

/** The pod status fields the reconciler reads. */
const POD_STATUS_KEPT = new Set(["phase", "reason", "message", "initContainerStatuses", "containerStatuses"]);

/** Removes, in place, the fields no reader of the cache needs; returns the same object. */
export function trimForCache<T extends KubeObject>(object: T): T {
  const metadata = object.metadata as T["metadata"] & { managedFields?: unknown };
  delete metadata.managedFields;
  if (object.kind === "Node" && object.apiVersion === "v1") {
    const { name, uid, resourceVersion } = metadata;
    const nodeInfo = (object.status as { nodeInfo?: unknown } | undefined)?.nodeInfo;
    for (const field of Object.keys(object))
      if (!["apiVersion", "kind", "metadata"].includes(field)) delete object[field];
    object.metadata = { name, uid, resourceVersion };
    if (nodeInfo !== undefined) (object as KubeObject).status = { nodeInfo };
    return object;
  }
  if (object.kind === "Pod" && object.apiVersion === "v1") {
    const status = object.status as Record<string, unknown> | undefined;
    if (status !== undefined)
      for (const field of Object.keys(status)) if (!POD_STATUS_KEPT.has(field)) delete status[field];
  }
  const annotations = metadata.annotations;
  if (object.kind !== KIND && annotations !== undefined && LAST_APPLIED_ANNOTATION in annotations) {
    delete annotations[LAST_APPLIED_ANNOTATION];
  }
  return object;
}
