// `kubectl rollout restart`: stamp the pod template with kubectl.kubernetes.io/restartedAt, so the
// Deployment (or Rollout, StatefulSet, DaemonSet) controller rolls out new pods — which pull the
// mutable tag again and may get new bytes. It is how a CI pipeline makes a new `latest` land
// without changing git.
import type { KubeObject } from "@digest-migrations/shared";
import type { KubeClient } from "../kit/client.ts";

export const RESTARTED_AT = "kubectl.kubernetes.io/restartedAt";

export interface WorkloadRef {
  namespace: string;
  name: string;
  /** Default apps/v1 Deployment. */
  apiVersion?: string;
  kind?: string;
}

/** Restarts the workload; resolves with the timestamp written. */
export async function restart(client: KubeClient, ref: WorkloadRef, at: Date = new Date()): Promise<string> {
  const stamp = at.toISOString();
  await client.patchObject<KubeObject>(ref.apiVersion ?? "apps/v1", ref.kind ?? "Deployment", ref.namespace, ref.name, {
    spec: { template: { metadata: { annotations: { [RESTARTED_AT]: stamp } } } },
  });
  return stamp;
}
