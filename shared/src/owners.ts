// Owner chains: from a pod to the workload that declares its pod template.
//
// Kubernetes links a pod to its controller with the ownerReference that has `controller: true`
// (metadata.ownerReferences[]); a Deployment owns ReplicaSets which own pods, a CronJob owns Jobs
// which own pods, StatefulSets/DaemonSets/ReplicationControllers own pods directly, and an Argo
// Rollout owns ReplicaSets like a Deployment does — its pod template is either its own
// `spec.template` or, with `spec.workloadRef`, the template of the Deployment it references.
// The migration Job is cloned from the top-most template (what git declares), while the pod's own
// ReplicaSet says which revision the pod belongs to.
import type { KubeObject, OwnerReference, Pod, PodTemplateSpec } from "./k8s.ts";

/** Finds an object by apiVersion, kind, namespace and name (a cache, the API, or rendered manifests). */
export interface OwnerLookup {
  get(apiVersion: string, kind: string, namespace: string, name: string): KubeObject | undefined;
}

/** Kinds whose objects carry a pod template (see podTemplateOf for where). */
export const WORKLOAD_KINDS: readonly string[] = [
  "Deployment",
  "StatefulSet",
  "DaemonSet",
  "ReplicaSet",
  "ReplicationController",
  "Job",
  "CronJob",
  "Rollout",
  "Pod",
];

/** API groups each workload kind may come from ("" is the core group). */
const WORKLOAD_GROUPS: Readonly<Record<string, readonly string[]>> = {
  Deployment: ["apps", "extensions"],
  StatefulSet: ["apps"],
  DaemonSet: ["apps", "extensions"],
  ReplicaSet: ["apps", "extensions"],
  ReplicationController: [""],
  Job: ["batch"],
  CronJob: ["batch"],
  Rollout: ["argoproj.io"],
  Pod: [""],
};

/** Annotations on ReplicaSets holding the owner's revision number (Deployment, Argo Rollout). */
export const REVISION_ANNOTATIONS: readonly string[] = [
  "deployment.kubernetes.io/revision",
  "rollout.argoproj.io/revision",
];

/** The group of an apiVersion: "apps/v1" → "apps", "v1" → "". */
export function groupOf(apiVersion: string): string {
  const slash = apiVersion.indexOf("/");
  return slash < 0 ? "" : apiVersion.slice(0, slash);
}

/** Is `object` one of the workload kinds, from its proper API group? */
export function isWorkload(object: Pick<KubeObject, "apiVersion" | "kind">): boolean {
  const groups = Object.hasOwn(WORKLOAD_GROUPS, object.kind) ? WORKLOAD_GROUPS[object.kind] : undefined;
  return groups !== undefined && typeof object.apiVersion === "string" && groups.includes(groupOf(object.apiVersion));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function templateAt(value: unknown): PodTemplateSpec | undefined {
  return isObject(value) && isObject(value.spec) ? (value as unknown as PodTemplateSpec) : undefined;
}

interface WorkloadRef {
  apiVersion: string;
  kind: string;
  name: string;
}

/** An Argo Rollout's spec.workloadRef, if it has one. */
function workloadRefOf(rollout: KubeObject): WorkloadRef | undefined {
  const spec = rollout.spec;
  if (!isObject(spec) || !isObject(spec.workloadRef)) return undefined;
  const ref = spec.workloadRef;
  return {
    apiVersion: typeof ref.apiVersion === "string" ? ref.apiVersion : "apps/v1",
    kind: typeof ref.kind === "string" ? ref.kind : "",
    name: typeof ref.name === "string" ? ref.name : "",
  };
}

/**
 * The pod template `workload` declares, by reference (callers may mutate it): `spec.template` of
 * Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers and Jobs,
 * `spec.jobTemplate.spec.template` of CronJobs, an Argo Rollout's `spec.template` — or, with
 * `spec.workloadRef`, the referenced Deployment's template found through `lookup` — and for a Pod
 * a `{metadata, spec}` view of the pod itself. Undefined for anything else or a malformed object.
 */
export function podTemplateOf(workload: KubeObject, lookup?: OwnerLookup): PodTemplateSpec | undefined {
  if (!isWorkload(workload)) return undefined;
  const spec = workload.spec;
  if (!isObject(spec)) return undefined;
  switch (workload.kind) {
    case "Pod":
      return { metadata: workload.metadata, spec: spec as unknown as PodTemplateSpec["spec"] };
    case "CronJob":
      return isObject(spec.jobTemplate) && isObject(spec.jobTemplate.spec)
        ? templateAt(spec.jobTemplate.spec.template)
        : undefined;
    case "Rollout": {
      const ref = workloadRefOf(workload);
      if (ref === undefined) return templateAt(spec.template);
      if (lookup === undefined || ref.kind !== "Deployment" || groupOf(ref.apiVersion) !== "apps") return undefined;
      const deployment = lookup.get(ref.apiVersion, ref.kind, workload.metadata.namespace ?? "", ref.name);
      return deployment === undefined || !isWorkload(deployment) ? undefined : podTemplateOf(deployment);
    }
    default:
      return templateAt(spec.template);
  }
}

/** The ownerReference with `controller: true` (at most one exists, the API server enforces it). */
export function controllerOf(object: KubeObject): OwnerReference | undefined {
  return object.metadata.ownerReferences?.find((ref) => ref.controller === true);
}

export interface TemplateOwner {
  apiVersion: string;
  kind: string;
  name: string;
  uid?: string;
}

export type TemplateForPod =
  | { ok: true; template: PodTemplateSpec; owner: TemplateOwner; revision?: string }
  | { ok: false; reason: "OwnerNotFound" | "TemplateNotFound" | "UnsupportedWorkloadRef"; message: string };

/** Which controller kinds the walk follows up from each kind (`group/Kind`). */
const PARENTS: Readonly<Record<string, readonly string[]>> = {
  "/Pod": ["apps/ReplicaSet", "apps/StatefulSet", "apps/DaemonSet", "batch/Job", "/ReplicationController"],
  "apps/ReplicaSet": ["apps/Deployment", "argoproj.io/Rollout"],
  "batch/Job": ["batch/CronJob"],
};

function groupKind(apiVersion: string, kind: string): string {
  return `${groupOf(apiVersion)}/${kind}`;
}

function describe(object: Pick<KubeObject, "kind" | "metadata">): string {
  const { namespace, name } = object.metadata;
  return `${object.kind} ${namespace !== undefined && namespace !== "" ? `${namespace}/` : ""}${name ?? "(unnamed)"}`;
}

function ownerOf(object: KubeObject): TemplateOwner {
  const owner: TemplateOwner = { apiVersion: object.apiVersion, kind: object.kind, name: object.metadata.name ?? "" };
  if (object.metadata.uid !== undefined) owner.uid = object.metadata.uid;
  return owner;
}

/**
 * Walks the controller chain from `pod` to the workload that declares its template: ReplicaSet →
 * Deployment or Argo Rollout (and a Rollout's workloadRef → Deployment), Job → CronJob, StatefulSet,
 * DaemonSet, ReplicationController, or the bare pod itself. The walk stops below a controller of a
 * kind it does not know (e.g. an in-house operator owning a Deployment), as upstream does. An owner
 * named by the chain but absent from `lookup`, or present with another uid (deleted and recreated),
 * is OwnerNotFound. `revision` is the pod's ReplicaSet revision number (Deployment/Rollout), when kept.
 */
export function templateForPod(pod: Pod, lookup: OwnerLookup): TemplateForPod {
  const namespace = pod.metadata.namespace ?? "";
  let current: KubeObject = pod;
  let revision: string | undefined;
  for (;;) {
    const ref = controllerOf(current);
    const currentGK = groupKind(current.apiVersion, current.kind);
    if (ref === undefined || !(PARENTS[currentGK] ?? []).includes(groupKind(ref.apiVersion, ref.kind))) break;
    const owner = lookup.get(ref.apiVersion, ref.kind, namespace, ref.name);
    const chain = `${describe(pod)}${current === pod ? "" : ` (via ${describe(current)})`}`;
    if (owner === undefined) {
      return {
        ok: false,
        reason: "OwnerNotFound",
        message: `${chain} is controlled by ${ref.kind} ${namespace}/${ref.name}, which was not found`,
      };
    }
    if (ref.uid && owner.metadata.uid && ref.uid !== owner.metadata.uid) {
      return {
        ok: false,
        reason: "OwnerNotFound",
        message:
          `${chain} is controlled by ${ref.kind} ${namespace}/${ref.name} with uid ${ref.uid}, ` +
          `but that name now has uid ${owner.metadata.uid} (the owner was replaced)`,
      };
    }
    if (currentGK === "apps/ReplicaSet") revision = revisionOf(current);
    current = owner;
  }
  if (current === pod) return { ok: true, template: { metadata: pod.metadata, spec: pod.spec }, owner: ownerOf(pod) };
  if (groupKind(current.apiVersion, current.kind) === "apps/ReplicaSet") revision = revisionOf(current);

  let templateSource = current;
  if (current.kind === "Rollout") {
    const ref = workloadRefOf(current);
    if (ref !== undefined) {
      if (ref.kind !== "Deployment" || groupOf(ref.apiVersion) !== "apps") {
        return {
          ok: false,
          reason: "UnsupportedWorkloadRef",
          message: `${describe(current)} spec.workloadRef names ${ref.apiVersion} ${ref.kind} ${ref.name}; only apps Deployments are supported`,
        };
      }
      const deployment = lookup.get(ref.apiVersion, ref.kind, namespace, ref.name);
      if (deployment === undefined) {
        return {
          ok: false,
          reason: "OwnerNotFound",
          message: `${describe(current)} spec.workloadRef names Deployment ${namespace}/${ref.name}, which was not found`,
        };
      }
      templateSource = deployment;
    }
  }
  const template = podTemplateOf(templateSource);
  if (template === undefined) {
    return {
      ok: false,
      reason: "TemplateNotFound",
      message: `${describe(templateSource)} (controller of ${describe(pod)}) has no pod template`,
    };
  }
  const result: TemplateForPod = { ok: true, template, owner: ownerOf(current) };
  if (revision !== undefined) result.revision = revision;
  return result;
}

function revisionOf(replicaSet: KubeObject): string | undefined {
  const annotations = replicaSet.metadata.annotations ?? {};
  for (const key of REVISION_ANNOTATIONS) {
    const value = annotations[key];
    if (value !== undefined && value !== "") return value;
  }
  return undefined;
}
