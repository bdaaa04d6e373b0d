// Small builders for the Kubernetes objects e2e tests create, as plain API JSON.
import type { Container, KubeObject, Pod, PodSpec } from "@digest-migrations/shared";

export function pod(namespace: string, name: string, spec: PodSpec, labels: Record<string, string> = {}): Pod {
  return { apiVersion: "v1", kind: "Pod", metadata: { name, namespace, labels }, spec };
}

export function deployment(
  namespace: string,
  name: string,
  containers: Container[],
  opts: { replicas?: number; initContainers?: Container[]; labels?: Record<string, string> } = {},
): KubeObject {
  const labels = { app: name, ...opts.labels };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace, labels },
    spec: {
      replicas: opts.replicas ?? 1,
      selector: { matchLabels: { app: name } },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels },
        spec: {
          terminationGracePeriodSeconds: 5,
          containers,
          ...(opts.initContainers ? { initContainers: opts.initContainers } : {}),
        },
      },
    },
  };
}

/** A one-replica StatefulSet of pods labelled `app: <name>` (`template`'s labels must say so). */
export function statefulSet(namespace: string, name: string, template: unknown): KubeObject {
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: { name, namespace },
    spec: { serviceName: name, replicas: 1, selector: { matchLabels: { app: name } }, template },
  };
}

export function job(
  namespace: string,
  name: string,
  containers: Container[],
  opts: { backoffLimit?: number } = {},
): KubeObject {
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name, namespace },
    spec: {
      backoffLimit: opts.backoffLimit ?? 0,
      template: { spec: { restartPolicy: "Never", terminationGracePeriodSeconds: 5, containers } },
    },
  };
}

/** The status condition `type` of an object, if present. */
export function condition(obj: KubeObject | undefined, type: string): { status: string; reason?: string } | undefined {
  const status = obj?.status as { conditions?: { type: string; status: string; reason?: string }[] } | undefined;
  return status?.conditions?.find((c) => c.type === type);
}
