// Probe pods: how the reconciler learns which digest a tag means on a node without running the
// application. A gated pod is held in its waiter init container, so its application container
// was never pulled and has no `imageID`. A probe pod on the same node (`spec.nodeName`, which
// bypasses the scheduler) with the gated container's image, pull policy, the pod's
// imagePullSecrets, service account and tolerations makes the kubelet pull exactly what the pod
// would pull; its command cannot exist, so the container never runs anything, but the kubelet
// records `status.containerStatuses[0].imageID` once the image is pulled and the container created
// (the start then fails with StartError). One probe serves every gated pod of the Migrator on that
// node created before it; it is owned by the Migrator and deleted after use.
import { createHash } from "node:crypto";
import {
  LABELS,
  MANAGED_BY,
  API_VERSION,
  KIND,
  migratorLabelValue,
  restrictedSecurityContext,
  type Container,
  type Migrator,
  type Pod,
} from "@digest-migrations/shared";

export const PROBE_ROLE = "probe";
export const PROBE_CONTAINER = "probe";
/** A command no image has, so the container is created (and its image recorded) but never runs. */
export const PROBE_COMMAND = "/digest-migrations-probe-does-not-exist";

const NAME_MAX = 63;

/** What the probe must reproduce of a gated pod: its node and how its container's image is pulled. */
export interface ProbeKey {
  node: string;
  image: string;
  imagePullPolicy?: string;
  imagePullSecrets: { name: string }[];
  serviceAccountName?: string;
  tolerations: Record<string, unknown>[];
}

export function probeKeyOf(pod: Pod, container: Container): ProbeKey {
  const key: ProbeKey = {
    node: pod.spec.nodeName ?? "",
    image: container.image ?? "",
    imagePullSecrets: pod.spec.imagePullSecrets ?? [],
    tolerations: pod.spec.tolerations ?? [],
  };
  if (container.imagePullPolicy !== undefined) key.imagePullPolicy = container.imagePullPolicy;
  if (pod.spec.serviceAccountName !== undefined) key.serviceAccountName = pod.spec.serviceAccountName;
  return key;
}

/**
 * The probe's name, deterministic from (Migrator, node, what is pulled and how), so concurrent
 * reconciles or replicas create one probe, never two: `<migrator>-probe-<16 hex>`.
 */
export function probeName(migratorName: string, key: ProbeKey): string {
  const hash = createHash("sha256")
    .update(JSON.stringify([migratorName, key.node, key.image, key.imagePullPolicy ?? "", key.imagePullSecrets]))
    .update(JSON.stringify([key.serviceAccountName ?? "", key.tolerations]))
    .digest("hex")
    .slice(0, 16);
  const suffix = `-probe-${hash}`;
  const prefix = migratorName
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .slice(0, NAME_MAX - suffix.length)
    .replace(/^-+|-+$/g, "");
  return `${prefix === "" ? "dm" : prefix}${suffix}`;
}

/** Builds the probe pod for `migrator` and `key` (a restricted-PSS pod with tiny resources). */
export function buildProbePod(migrator: Migrator, key: ProbeKey): Pod {
  const name = migrator.metadata.name ?? "";
  const container: Container = {
    name: PROBE_CONTAINER,
    image: key.image,
    command: [PROBE_COMMAND],
    resources: { requests: { cpu: "1m", memory: "4Mi" }, limits: { cpu: "10m", memory: "16Mi" } },
    securityContext: restrictedSecurityContext(),
  };
  if (key.imagePullPolicy !== undefined) container.imagePullPolicy = key.imagePullPolicy;
  const pod: Pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: probeName(name, key),
      namespace: migrator.metadata.namespace ?? "",
      labels: {
        [LABELS.migrator]: migratorLabelValue(name),
        [LABELS.role]: PROBE_ROLE,
        [LABELS.managedBy]: MANAGED_BY,
      },
      ownerReferences: [
        { apiVersion: API_VERSION, kind: KIND, name, uid: migrator.metadata.uid ?? "", controller: true },
      ],
    },
    spec: {
      nodeName: key.node,
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 0,
      // A numeric non-root user: the kubelet's runAsNonRoot check passes without inspecting the
      // image's USER (a name there would fail the check before the container is created).
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65534,
        runAsGroup: 65534,
        seccompProfile: { type: "RuntimeDefault" },
      },
      containers: [container],
    },
  };
  if (key.imagePullSecrets.length > 0) pod.spec.imagePullSecrets = key.imagePullSecrets;
  if (key.serviceAccountName !== undefined) pod.spec.serviceAccountName = key.serviceAccountName;
  if (key.tolerations.length > 0) pod.spec.tolerations = key.tolerations;
  return pod;
}
