// Minimal CustomResourceDefinitions for third-party kinds the product meets but the control plane does not
// serve: Argo Rollouts' Rollout and the Prometheus Operator's ServiceMonitor. Group, version, kind, scope and
// status subresource match the real projects; the schemas keep every field (no validation of their own),
// which is all a test of our objects needs.
import type { KubeObject } from "@digest-migrations/shared";

function permissiveCrd(group: string, version: string, kind: string, plural: string, status: boolean): KubeObject {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.${group}` },
    spec: {
      group,
      scope: "Namespaced",
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [
        {
          name: version,
          served: true,
          storage: true,
          ...(status ? { subresources: { status: {} } } : {}),
          schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
        },
      ],
    },
  };
}

/** argoproj.io/v1alpha1 Rollout, with a status subresource as Argo Rollouts serves it. */
export const ROLLOUT_CRD = permissiveCrd("argoproj.io", "v1alpha1", "Rollout", "rollouts", true);

/** monitoring.coreos.com/v1 ServiceMonitor. */
export const SERVICE_MONITOR_CRD = permissiveCrd(
  "monitoring.coreos.com",
  "v1",
  "ServiceMonitor",
  "servicemonitors",
  false,
);
