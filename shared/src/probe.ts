// Probe pods: how the reconciler learns which digest a tag means on a node without running the
// application. A gated pod is held in its waiter init container, so its application container was
// never pulled and has no `imageID`. A probe pod on the same node (`spec.nodeName`, which bypasses the
// scheduler) with the gated container's image and pull policy and the pod's imagePullSecrets, service
// account and tolerations makes the kubelet pull exactly what the pod would pull; its command cannot
// exist, so the container never runs anything, but a runtime that creates the container before
// starting it (containerd, cri-dockerd) records `status.containerStatuses[0].imageID`, and the start
// fails with StartError. One probe serves every gated pod of the Migrator on that node created before
// it; it is owned by the Migrator and deleted after use.
//
// readProbe decides every state a kubelet can leave a probe in (see testdata/kubelet-statuses.ts for
// the statuses themselves): a digest, an image without one, a pull or configuration failure the kubelet
// keeps retrying, a runtime that cannot answer this way (CRI-O), a pod that ended without an answer
// (refused by the kubelet's admission, evicted), or still on its way.
import { createHash } from "node:crypto";
import { digestFromImageID } from "./image-id.ts";
import { isOwnedBy, migratorLabelValue } from "./job.ts";
import type { Container, Node, Pod } from "./k8s.ts";
import { API_VERSION, KIND, LABELS, MANAGED_BY } from "./migrator.ts";
import type { Migrator } from "./migrator.ts";
import { restrictedSecurityContext } from "./waiter-protocol.ts";

export const PROBE_ROLE = "probe";
export const PROBE_CONTAINER = "probe";
/** A command no image has, so the container is created (and its image recorded) but never runs. */
export const PROBE_COMMAND = "/digest-migrations-probe-does-not-exist";
/** A probe that ended without an answer is replaced once it is this old (the kubelet's refusal may pass). */
export const PROBE_RETRY_SECONDS = 30;

const NAME_MAX = 63;

/**
 * The probe's CPU limit. Nothing of the image runs, but the runtime's own set-up does, inside the
 * pod's CFS quota: the pause container and `runc init` of the probe container. At 10m (1 ms of CPU
 * per 100 ms) that set-up took ≈ 7 s on a real node, at 100m under 1 s (e2e/bench probe-cost). A
 * limit is kept, the waiter's, for namespaces whose ResourceQuota requires one.
 */
export const PROBE_CPU_LIMIT = "100m";

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
    resources: { requests: { cpu: "1m", memory: "4Mi" }, limits: { cpu: PROBE_CPU_LIMIT, memory: "16Mi" } },
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

/** Is `pod` a probe of `migrator` (its role label, and a controller reference to the Migrator's uid)? */
export function isProbeOf(pod: Pod, migrator: Migrator): boolean {
  return pod.metadata.labels?.[LABELS.role] === PROBE_ROLE && isOwnedBy(pod, migrator);
}

/**
 * May a probe started at `probeCreated` answer for a pod created at `podCreated`? Only pods that
 * existed when the probe started: a later pod may have been created after the tag moved.
 * Timestamps are RFC 3339 with one-second resolution, so the same second counts as "before".
 */
export function probeServes(probeCreated: string | undefined, podCreated: string | undefined): boolean {
  if (probeCreated === undefined || podCreated === undefined) return false;
  return Date.parse(podCreated) <= Date.parse(probeCreated);
}

// ---------------------------------------------------------------------------------------------
// Reading a probe

/** What a probe pod's status says about the image it pulled. */
export type ProbeOutcome =
  | { kind: "digest"; digest: string }
  /** The node has the image, but no repository digest for it (built or loaded on the node). */
  | { kind: "noDigest"; message: string }
  /** The kubelet cannot pull the image or configure the container; it retries by itself with back-off. */
  | { kind: "failed"; reason: string; message: string }
  /** The node's runtime fails the container before recording an imageID (CRI-O): no probe answers there. */
  | { kind: "unsupported"; reason: string; message: string }
  /** The probe pod ended without an answer (refused by the kubelet's admission, evicted): a new one may answer. */
  | { kind: "ended"; reason: string; message: string }
  /** Nothing known yet: the kubelet has not reported the container, or is still creating it (pulling). */
  | { kind: "pending"; message: string };

/** Waiting reasons of a container whose image cannot be pulled (kubelet images package). */
export const PULL_FAILURE_REASONS: readonly string[] = [
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "ErrImageNeverPull",
  "RegistryUnavailable",
  "ImageInspectError",
];

/** Waiting reasons of a container the runtime failed to create or start (kubelet kuberuntime). */
const CREATE_FAILURE_REASONS: readonly string[] = ["CreateContainerError", "RunContainerError"];

/** node.status.nodeInfo.containerRuntimeVersion values of runtimes that run `runc create` inside CreateContainer. */
const NO_IMAGE_ID_ON_CREATE_FAILURE = /^cri-o:\/\//;

/** `reason: message`, or the reason alone. */
function detail(reason: string, message: string | undefined): string {
  return message ? `${reason}: ${message.trim()}` : reason;
}

/**
 * Reads probe pod `probe` on `node` (undefined when the node is not known). Only an imageID gives a
 * digest; every other state says what the kubelet reports, never a guess:
 * - `imageID` set (containerd and cri-dockerd create the container, then fail to start it: StartError,
 *   or RunContainerError under OnFailure) → its digest, or noDigest for a configuration ID;
 * - phase Failed or Succeeded without one (the kubelet refused the pod — status.reason OutOfcpu,
 *   NodeAffinity… with no container statuses — or evicted it) → ended;
 * - waiting ErrImagePull, ImagePullBackOff… → failed (a pull failure);
 * - waiting CreateContainerConfigError → failed (the image was pulled, the container cannot be configured);
 * - waiting CreateContainerError / RunContainerError without imageID → unsupported when the node's runtime
 *   is CRI-O (it runs `runc create` inside CreateContainer, so a missing command fails before an imageID
 *   exists), else failed with the runtime named;
 * - anything else (no status yet, ContainerCreating) → pending.
 */
export function readProbe(probe: Pod, node: Node | undefined): ProbeOutcome {
  const name = probe.metadata.name ?? "";
  const nodeName = probe.spec.nodeName ?? "?";
  const status = (probe.status?.containerStatuses ?? []).find((s) => s.name === PROBE_CONTAINER);
  const image = status?.image || (probe.spec.containers[0]?.image ?? "the image");
  const imageID = status?.imageID ?? "";
  if (imageID !== "") {
    const parsed = digestFromImageID(imageID);
    if (parsed.ok) return { kind: "digest", digest: parsed.digest };
    return { kind: "noDigest", message: `probe pod ${name}: ${parsed.message}` };
  }
  const phase = probe.status?.phase;
  if (phase === "Failed" || phase === "Succeeded") {
    const terminated = status?.state?.terminated;
    const reason = probe.status?.reason ?? terminated?.reason ?? phase;
    const message = probe.status?.message ?? terminated?.message;
    return {
      kind: "ended",
      reason,
      message: `the kubelet on node ${nodeName} ended probe pod ${name} before it reported an image: ${detail(reason, message)}`,
    };
  }
  const waiting = status?.state?.waiting;
  const reason = waiting?.reason ?? "";
  if (PULL_FAILURE_REASONS.includes(reason)) {
    const message = `probe pod ${name} on node ${nodeName} cannot pull ${image}: ${detail(reason, waiting?.message)}`;
    return { kind: "failed", reason, message };
  }
  if (reason === "CreateContainerConfigError") {
    const message = `the kubelet on node ${nodeName} cannot configure the container of probe pod ${name}: ${detail(reason, waiting?.message)}`;
    return { kind: "failed", reason, message };
  }
  if (CREATE_FAILURE_REASONS.includes(reason)) {
    const runtime = node?.status?.nodeInfo?.containerRuntimeVersion;
    const said = detail(reason, waiting?.message);
    if (runtime !== undefined && NO_IMAGE_ID_ON_CREATE_FAILURE.test(runtime)) {
      const message =
        `node ${nodeName} runs ${runtime} (node.status.nodeInfo.containerRuntimeVersion), which fails a probe's container ` +
        `before recording its imageID (probe pod ${name}: ${said}), so the digest of ${image} cannot be read there; ` +
        `reference the image by digest (name@sha256:…) in the workload, or run its pods on nodes with containerd`;
      return { kind: "unsupported", reason, message };
    }
    const message = `the container runtime of node ${nodeName} (${runtime ?? "unknown: the node is not in the cache"}) cannot create the container of probe pod ${name}: ${said}`;
    return { kind: "failed", reason, message };
  }
  const state = reason === "" ? "no container status yet" : reason;
  return {
    kind: "pending",
    message: `probe pod ${name} on node ${nodeName} has not reported an image yet (${state})`,
  };
}
