// Minimal plain-JSON shapes of the Kubernetes objects this product reads and writes.
// They mirror the API's JSON (timestamps are RFC 3339 strings), not @kubernetes/client-node's
// deserialised classes, so the same code serves the plugin (YAML from git) and the reconciler
// (JSON from the API server). Unknown fields are carried through untouched.

export type Labels = Record<string, string>;

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Labels;
  annotations?: Labels;
  ownerReferences?: OwnerReference[];
  [field: string]: unknown;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

export interface LabelSelectorRequirement {
  key: string;
  operator: string;
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Labels;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: Record<string, unknown>;
}

/** A container's resources: resource name → quantity ("500m", "256Mi", or a number). */
export interface ResourceRequirements {
  limits?: Record<string, string | number>;
  requests?: Record<string, string | number>;
}

export interface Container {
  name: string;
  image?: string;
  imagePullPolicy?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  [field: string]: unknown;
}

export interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  restartPolicy?: string;
  nodeName?: string;
  serviceAccountName?: string;
  imagePullSecrets?: { name: string }[];
  tolerations?: Record<string, unknown>[];
  [field: string]: unknown;
}

export interface PodTemplateSpec {
  metadata?: ObjectMeta;
  spec: PodSpec;
}

export interface ContainerState {
  waiting?: { reason?: string; message?: string };
  running?: { startedAt?: string };
  terminated?: {
    exitCode: number;
    signal?: number;
    reason?: string;
    message?: string;
    startedAt?: string;
    finishedAt?: string;
    containerID?: string;
  };
}

export interface ContainerStatus {
  name: string;
  image: string;
  imageID: string;
  /** `<runtime>://<id>`, e.g. containerd://0f3…, once the runtime created the container */
  containerID?: string;
  ready: boolean;
  restartCount?: number;
  started?: boolean;
  state?: ContainerState;
  lastState?: ContainerState;
}

export interface PodCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastProbeTime?: string | null;
  lastTransitionTime?: string;
}

export interface PodStatus {
  phase?: string;
  /** Set with `message` when the kubelet refused or evicted the pod (e.g. OutOfcpu, NodeAffinity, Evicted). */
  reason?: string;
  message?: string;
  conditions?: PodCondition[];
  initContainerStatuses?: ContainerStatus[];
  containerStatuses?: ContainerStatus[];
  startTime?: string;
  [field: string]: unknown;
}

export interface Pod extends KubeObject {
  spec: PodSpec;
  status?: PodStatus;
}

/** A Node, as far as the reconciler reads one: which container runtime its kubelet talks to. */
export interface Node extends KubeObject {
  status?: {
    nodeInfo?: { containerRuntimeVersion?: string; kubeletVersion?: string; [field: string]: unknown };
    [field: string]: unknown;
  };
}

/** A Kubernetes-style status condition (metav1.Condition). */
export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}
