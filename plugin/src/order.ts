// The output order, so the same input always gives byte-identical output. Objects are sorted by
//   1. sync wave (argocd.argoproj.io/sync-wave, default 0), ascending — the order Argo CD applies them;
//   2. kind, in Helm's install order (Namespaces and CRDs before what uses them; Migrators just before
//      workloads), then kinds not in the list by name;
//   3. namespace as written (none first), 4. name, 5. apiVersion;
//   6. for objects equal in all of these (only possible with generateName), the order they were read in.
import type { KubeObject } from "@digest-migrations/shared";
import { KIND } from "@digest-migrations/shared";
import type { Manifest } from "./manifests.ts";
import { syncWave } from "./wire.ts";

export const KIND_ORDER: readonly string[] = [
  "Namespace",
  "NetworkPolicy",
  "ResourceQuota",
  "LimitRange",
  "PodSecurityPolicy",
  "PodDisruptionBudget",
  "ServiceAccount",
  "Secret",
  "ConfigMap",
  "StorageClass",
  "PersistentVolume",
  "PersistentVolumeClaim",
  "CustomResourceDefinition",
  "ClusterRole",
  "ClusterRoleBinding",
  "Role",
  "RoleBinding",
  "Service",
  KIND,
  "DaemonSet",
  "Pod",
  "ReplicationController",
  "ReplicaSet",
  "Deployment",
  "Rollout",
  "HorizontalPodAutoscaler",
  "StatefulSet",
  "Job",
  "CronJob",
  "IngressClass",
  "Ingress",
  "APIService",
  "MutatingWebhookConfiguration",
  "ValidatingWebhookConfiguration",
];
const KIND_RANK = new Map(KIND_ORDER.map((k, i) => [k, i]));

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function compareObjects(a: KubeObject, b: KubeObject): number {
  return (
    syncWave(a) - syncWave(b) ||
    (KIND_RANK.get(a.kind) ?? KIND_ORDER.length) - (KIND_RANK.get(b.kind) ?? KIND_ORDER.length) ||
    compareStrings(a.kind, b.kind) ||
    compareStrings(a.metadata.namespace ?? "", b.metadata.namespace ?? "") ||
    compareStrings(
      a.metadata.name ?? a.metadata.generateName ?? "",
      b.metadata.name ?? b.metadata.generateName ?? "",
    ) ||
    compareStrings(a.apiVersion, b.apiVersion)
  );
}

/** A sorted copy (Array.prototype.sort is stable, which gives rule 6). */
export function sortManifests(manifests: readonly Manifest[]): Manifest[] {
  return [...manifests].sort((a, b) => compareObjects(a.object, b.object));
}
