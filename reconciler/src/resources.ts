// What the controller caches: the resources it watches (the core ones, and the optional ones it looks
// for by discovery), and several reflectors of one resource (one per watched namespace) read as one store.
import { API_VERSION, KIND, PLURAL, groupOf } from "@digest-migrations/shared";
import type { KubeObject } from "@digest-migrations/shared";
import type { Reflector } from "./cache.ts";
import type { Store } from "./reconcile.ts";

/** A resource the controller caches. */
export interface Resource {
  apiVersion: string;
  kind: string;
  plural: string;
  /** Cluster-scoped: one reflector, whatever namespaces are watched. */
  cluster?: boolean;
}

export const CORE_RESOURCES: readonly Resource[] = [
  { apiVersion: API_VERSION, kind: KIND, plural: PLURAL },
  { apiVersion: "v1", kind: "Pod", plural: "pods" },
  { apiVersion: "batch/v1", kind: "Job", plural: "jobs" },
  { apiVersion: "apps/v1", kind: "ReplicaSet", plural: "replicasets" },
  { apiVersion: "apps/v1", kind: "Deployment", plural: "deployments" },
  { apiVersion: "apps/v1", kind: "StatefulSet", plural: "statefulsets" },
  { apiVersion: "apps/v1", kind: "DaemonSet", plural: "daemonsets" },
  { apiVersion: "v1", kind: "Node", plural: "nodes", cluster: true },
];

/** Optional resources, found by discovery: the first apiVersion served wins. */
export const OPTIONAL_RESOURCES: readonly { kind: string; plural: string; apiVersions: string[] }[] = [
  { kind: "CronJob", plural: "cronjobs", apiVersions: ["batch/v1", "batch/v1beta1"] },
  { kind: "Rollout", plural: "rollouts", apiVersions: ["argoproj.io/v1alpha1"] },
];

/** Several reflectors of one resource (one per watched namespace) read as one store. */
export class MultiStore<T extends KubeObject> implements Store<T> {
  readonly reflectors: Reflector<T>[] = [];
  get(namespace: string | undefined, name: string): T | undefined {
    for (const r of this.reflectors) {
      const found = r.get(namespace, name);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  list(namespace?: string): T[] {
    return this.reflectors.flatMap((r) => r.list(namespace));
  }
}

export function groupKind(apiVersion: string, kind: string): string {
  return `${groupOf(apiVersion)}/${kind}`;
}
