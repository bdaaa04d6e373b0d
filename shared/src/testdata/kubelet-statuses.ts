// Pod and node statuses as a kubelet 1.20 writes them, for the plan's and the release rule's tests:
// plain JSON in exactly the shape of `kubectl get pod -o json` .status (and a Node's .status.nodeInfo).
// Where the situation happens on the test's real node (kubelet 1.20.2, containerd 1.6, runc 1.1), the
// status is the one recorded there (kubelet-1.20/*.json, written by e2e/node/kubelet-record.ts and
// checked again on every e2e run), with the recording's image, digest and container names replaced by
// the ones below; the rest (CRI-O, resource pressure, eviction) are literals in the same shape.
//
// What a real kubelet does, and these statuses show:
// - a container it has not created yet is `waiting` with reason `PodInitializing` (while init containers
//   run) or `ContainerCreating`, `imageID: ""`, and `image` copied from the pod spec on every sync;
// - a probe whose command cannot exist: containerd creates the container (so the status has `imageID`
//   `<registry>/<repo>@sha256:…`), the start fails: terminated `StartError`, exit code 128, phase Failed;
// - CRI-O runs `runc create` inside CreateContainer, so the same probe waits in `CreateContainerError`
//   with no `imageID`;
// - a pull failure waits in `ErrImagePull`, then `ImagePullBackOff`, `imageID: ""`;
// - a pod the kubelet's admission refuses (resources, node affinity) is Failed with `status.reason` and
//   `status.message` and no container statuses at all.
import { readFileSync } from "node:fs";
import type { PodStatus } from "../k8s.ts";

/** The image and digests the statuses below speak of. */
export const IMAGE = {
  /** The gated container's image as git writes it. */
  tag: "127.0.0.1:5000/app:latest",
  repository: "127.0.0.1:5000/app",
  /** The manifest digest `latest` resolved to on the node. */
  digest: "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
  /** The image's configuration ID (what `image` may show once the container exists): not a digest. */
  configID: "sha256:9c7a54a9a43cca047013b82af109fe963fde787f63f9e016fdc3384500c2823d",
  waiter: "127.0.0.1:5000/digest-migrations:test",
  waiterImageID:
    "127.0.0.1:5000/digest-migrations@sha256:e2b9ab4e0ae6f2cba6b5bbf0b0e4a5cfe5a1a74b0d3c7a20a3b3a2b6f5c8d9e1",
  pinned: "127.0.0.1:5000/app:latest@sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
} as const;

export const WAITER_CONTAINER = "migrate-wait-web";
export const APP_CONTAINER = "app";
export const PROBE_CONTAINER = "probe";
export const PROBE_COMMAND = "/digest-migrations-probe-does-not-exist";

/**
 * A status the real kubelet wrote (kubelet-1.20/<file>), in the words of these tests: the recording's
 * image repository and digest become IMAGE's, its waiter container is WAITER_CONTAINER.
 */
function recorded(file: string): PodStatus {
  const rec = JSON.parse(readFileSync(new URL(`./kubelet-1.20/${file}`, import.meta.url), "utf8")) as {
    image: string;
    digest: string;
    status: PodStatus;
  };
  const repository = rec.image.slice(0, rec.image.lastIndexOf(":"));
  const text = JSON.stringify(rec.status)
    .replaceAll(rec.digest, IMAGE.digest)
    .replaceAll(repository, IMAGE.repository)
    .replaceAll('"migrate-wait-db"', JSON.stringify(WAITER_CONTAINER))
    .replaceAll("[migrate-wait-db]", `[${WAITER_CONTAINER}]`);
  return JSON.parse(text) as PodStatus;
}

const CREATED = "2026-12-01T10:00:00Z";

const gatedConditions = [
  {
    type: "Initialized",
    status: "False",
    lastProbeTime: null,
    lastTransitionTime: CREATED,
    reason: "ContainersNotInitialized",
    message: `containers with incomplete status: [${WAITER_CONTAINER}]`,
  },
  {
    type: "Ready",
    status: "False",
    lastProbeTime: null,
    lastTransitionTime: CREATED,
    reason: "ContainersNotReady",
    message: `containers with unready status: [${APP_CONTAINER}]`,
  },
  {
    type: "ContainersReady",
    status: "False",
    lastProbeTime: null,
    lastTransitionTime: CREATED,
    reason: "ContainersNotReady",
    message: `containers with unready status: [${APP_CONTAINER}]`,
  },
  { type: "PodScheduled", status: "True", lastProbeTime: null, lastTransitionTime: CREATED },
];

const waiterRunning = {
  name: WAITER_CONTAINER,
  state: { running: { startedAt: "2026-12-01T10:00:01Z" } },
  lastState: {},
  ready: false,
  restartCount: 0,
  image: IMAGE.waiter,
  imageID: IMAGE.waiterImageID,
  containerID: "containerd://4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b",
};

/** A gated pod: its waiter runs, the app container was never created (the spec names a tag). */
export const GATED_BEFORE_PIN: PodStatus = recorded("gated-waiting.json");

/** The same pod after its spec was pinned and the kubelet synced it: `image` is the patched reference. */
export const GATED_PIN_SEEN: PodStatus = recorded("gated-pinned.json");

/** Released and running the pinned digest: `image` shows the tag again (the runtime's name for the image), `imageID` the digest. */
export const RUNNING_PINNED: PodStatus = recorded("released-running.json");

// ---------------------------------------------------------------------------------------------
// Probe pods (one container, named "probe", command PROBE_COMMAND, restartPolicy Never)

const PROBE_CREATED = "2026-12-01T10:00:05Z";

/** What the API server stores at creation, before any kubelet wrote a status. */
export const PROBE_CREATED_ONLY: PodStatus = { phase: "Pending", qosClass: "Burstable" };

function probeConditions(reason: string, message: string): PodStatus["conditions"] {
  return [
    { type: "Initialized", status: "True", lastProbeTime: null, lastTransitionTime: PROBE_CREATED },
    { type: "Ready", status: "False", lastProbeTime: null, lastTransitionTime: PROBE_CREATED, reason, message },
    {
      type: "ContainersReady",
      status: "False",
      lastProbeTime: null,
      lastTransitionTime: PROBE_CREATED,
      reason,
      message,
    },
    { type: "PodScheduled", status: "True", lastProbeTime: null, lastTransitionTime: PROBE_CREATED },
  ] as PodStatus["conditions"];
}

function probeWaiting(reason: string, message: string | undefined, imageID = ""): PodStatus {
  return {
    phase: "Pending",
    conditions: probeConditions("ContainersNotReady", `containers with unready status: [${PROBE_CONTAINER}]`),
    hostIP: "127.0.0.1",
    startTime: PROBE_CREATED,
    containerStatuses: [
      {
        name: PROBE_CONTAINER,
        state: { waiting: message === undefined ? { reason } : { reason, message } },
        lastState: {},
        ready: false,
        restartCount: 0,
        image: IMAGE.tag,
        imageID,
        started: false,
      },
    ],
    qosClass: "Burstable",
  };
}

/** The kubelet is pulling (or creating the container): nothing known yet. */
export const PROBE_CONTAINER_CREATING: PodStatus = probeWaiting("ContainerCreating", undefined);

/** containerd: the container was created (imageID recorded), its start failed; phase Failed ≈ 2 s after creation. */
export const PROBE_START_ERROR: PodStatus = recorded("probe-start-error.json");

/** containerd with restartPolicy OnFailure: the start failed and is retried; imageID is there. */
export const PROBE_RUN_CONTAINER_ERROR_WITH_IMAGE_ID: PodStatus = probeWaiting(
  "RunContainerError",
  `failed to start container "0c1d2e3f4a5b": Error response from daemon: OCI runtime create failed: exec: "${PROBE_COMMAND}": stat ${PROBE_COMMAND}: no such file or directory`,
  `${IMAGE.repository}@${IMAGE.digest}`,
);

/** CRI-O: `runc create` runs inside CreateContainer, so a missing command fails before any imageID exists. */
export const PROBE_CREATE_CONTAINER_ERROR: PodStatus = probeWaiting(
  "CreateContainerError",
  `container create failed: time="2026-12-01T10:00:07Z" level=error msg="runc create failed: unable to start container process: exec: \\"${PROBE_COMMAND}\\": stat ${PROBE_COMMAND}: no such file or directory"\n`,
);

/** A start failure reported without an imageID (a runtime that records none for a container that never ran). */
export const PROBE_RUN_CONTAINER_ERROR: PodStatus = probeWaiting(
  "RunContainerError",
  `failed to start container: exec: "${PROBE_COMMAND}": stat ${PROBE_COMMAND}: no such file or directory`,
);

/** The kubelet could not build the container's configuration (after pulling): no container, no imageID. */
export const PROBE_CREATE_CONTAINER_CONFIG_ERROR: PodStatus = probeWaiting(
  "CreateContainerConfigError",
  `container has runAsNonRoot and image will run as root (pod: "web-probe-0123456789abcdef_shop(7f0e2c1a-3b4d-4e5f-8a9b-0c1d2e3f4a5b)", container: ${PROBE_CONTAINER})`,
);

/** The image (tag) does not exist in the registry. */
export const PROBE_ERR_IMAGE_PULL: PodStatus = recorded("pull-missing-image.json");

/** The kubelet's back-off between pull attempts. */
export const PROBE_IMAGE_PULL_BACK_OFF: PodStatus = recorded("pull-missing-image-backoff.json");

/** A registry nobody answers on: the pull failed (connection refused). */
export const PROBE_ERR_IMAGE_PULL_UNREACHABLE: PodStatus = recorded("pull-unreachable-registry.json");

/** An image built or loaded on the node: containerd reports its configuration ID, no repository digest. */
export const PROBE_START_ERROR_CONFIG_ID: PodStatus = {
  ...PROBE_START_ERROR,
  containerStatuses: PROBE_START_ERROR.containerStatuses!.map((s) => ({ ...s, imageID: IMAGE.configID })),
};

/** containerd with restartPolicy OnFailure, after a few failed starts: backing off, imageID kept. */
export const PROBE_CRASH_LOOP_WITH_IMAGE_ID: PodStatus = recorded("probe-on-failure-crashloop.json");

/** Refused by the kubelet's admission (kubelet rejectPod): Failed, with a reason and no container statuses. */
export const PROBE_REJECTED_OUT_OF_CPU: PodStatus = {
  phase: "Failed",
  reason: "OutOfcpu",
  message: "Pod Node didn't have enough resource: cpu, requested: 1, used: 1999, capacity: 2000",
  startTime: PROBE_CREATED,
};

export const PROBE_REJECTED_NODE_AFFINITY: PodStatus = recorded("admission-node-affinity.json");

/** Evicted (node pressure) before the image was pulled: Failed, the container never created. */
export const PROBE_EVICTED_WHILE_PULLING: PodStatus = {
  ...PROBE_CONTAINER_CREATING,
  phase: "Failed",
  reason: "Evicted",
  message: "The node was low on resource: ephemeral-storage. ",
};

// ---------------------------------------------------------------------------------------------
// Nodes (.status.nodeInfo)

export const NODE_INFO_CONTAINERD = {
  machineID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
  systemUUID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
  bootID: "7c6b5a49-3827-4165-9f8e-7d6c5b4a3928",
  kernelVersion: "6.1.0-28-amd64",
  osImage: "Debian GNU/Linux 12 (bookworm)",
  containerRuntimeVersion: "containerd://1.6.20",
  kubeletVersion: "v1.20.2",
  kubeProxyVersion: "v1.20.2",
  operatingSystem: "linux",
  architecture: "amd64",
};

export const NODE_INFO_CRIO = { ...NODE_INFO_CONTAINERD, containerRuntimeVersion: "cri-o://1.20.0" };
