// Builders of plan snapshots for plan.test.ts and plan.property.test.ts: one Migrator "web" gating
// container "app" of a Deployment's pods, their ReplicaSets (one per revision), probe pods, migration
// Jobs and nodes, with the pods' and probes' statuses taken from testdata/kubelet-statuses.ts. Used by
// tests only (not exported from index.ts).
import { buildMigrationJob } from "./job.ts";
import type { KubeObject, Node, Pod, PodStatus } from "./k8s.ts";
import { API_VERSION, KIND } from "./migrator.ts";
import type { Migrator, MigratorSpec, MigratorStatus } from "./migrator.ts";
import type { OwnerLookup } from "./owners.ts";
import type { PinRecord, Snapshot } from "./plan.ts";
import { buildProbePod, probeKeyOf } from "./probe.ts";
import { GATED_BEFORE_PIN, IMAGE, NODE_INFO_CONTAINERD } from "./testdata/kubelet-statuses.ts";
import { waiterInitContainer } from "./waiter-protocol.ts";

export const NS = "shop";
export const NAME = "web";
export const NOW = new Date("2026-12-01T10:10:00Z");
export const D1 = `sha256:${"1".repeat(64)}`;
export const D2 = `sha256:${"2".repeat(64)}`;
export const D3 = `sha256:${"3".repeat(64)}`;

/** `n` seconds after 10:00:00 on the day of NOW, as creationTimestamp has it. */
export function at(n: number): string {
  return new Date(Date.parse("2026-12-01T10:00:00Z") + n * 1000).toISOString().replace(".000Z", "Z");
}

export function migrator(
  over: { spec?: Partial<MigratorSpec>; status?: MigratorStatus; retry?: string; deleted?: boolean } = {},
): Migrator {
  const m: Migrator = {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: NAME, namespace: NS, uid: "m-uid", generation: 1, resourceVersion: "10" },
    spec: { selector: { matchLabels: { app: "web" } }, command: ["migrate"], ...over.spec },
  };
  if (over.status !== undefined) m.status = over.status;
  if (over.retry !== undefined) m.metadata.annotations = { "migrations.coderanger.net/retry": over.retry };
  if (over.deleted) m.metadata.deletionTimestamp = at(500);
  return m;
}

/** A status that records `digests` as migrated, newest first. */
export function migrated(...digests: string[]): MigratorStatus {
  return {
    lastSuccessfulMigration: digests[0],
    migratedDigests: digests.map((d) => ({
      digest: d,
      image: `${IMAGE.tag}@${d}`,
      job: `web-${d.slice(7, 17)}`,
      completionTime: at(1),
    })),
  };
}

const deployment: KubeObject = {
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "web", namespace: NS, uid: "uid-deploy" },
  spec: {
    template: { metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "app", image: IMAGE.tag }] } },
  },
};

export function replicaSet(revision: number): KubeObject {
  return {
    apiVersion: "apps/v1",
    kind: "ReplicaSet",
    metadata: {
      name: `web-${revision}`,
      namespace: NS,
      uid: `uid-rs-${revision}`,
      annotations: { "deployment.kubernetes.io/revision": String(revision) },
      ownerReferences: [
        { apiVersion: "apps/v1", kind: "Deployment", name: "web", uid: "uid-deploy", controller: true },
      ],
    },
    spec: { template: deployment["spec"] },
  };
}

/** Owners found by (kind, name). */
export function owners(
  objects: readonly KubeObject[] = [deployment, replicaSet(1), replicaSet(2), replicaSet(3)],
): OwnerLookup {
  return {
    get: (_apiVersion, kind, _namespace, name) => objects.find((o) => o.kind === kind && o.metadata.name === name),
  };
}

export interface PodOptions {
  created?: number;
  revision?: number;
  node?: string;
  image?: string;
  /** The waiter: running (gated), done (released), none (not injected). */
  waiter?: "running" | "done" | "none";
  status?: PodStatus;
  labels?: Record<string, string>;
}

/** An application pod of the Deployment, gated by default, its status as a kubelet reports it. */
export function appPod(name: string, o: PodOptions = {}): Pod {
  const waiter = o.waiter ?? "running";
  const revision = o.revision ?? 1;
  const pod: Pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: NS,
      uid: `uid-${name}`,
      creationTimestamp: at(o.created ?? 0),
      labels: o.labels ?? { app: "web" },
      ownerReferences: [
        {
          apiVersion: "apps/v1",
          kind: "ReplicaSet",
          name: `web-${revision}`,
          uid: `uid-rs-${revision}`,
          controller: true,
        },
      ],
    },
    spec: {
      nodeName: o.node ?? "node-1",
      initContainers:
        waiter === "none" ? [] : [waiterInitContainer(NAME, "app", { image: IMAGE.waiter, apiUrl: "http://r:8443" })],
      containers: [{ name: "app", image: o.image ?? IMAGE.tag, imagePullPolicy: "Always" }],
    },
    status: o.status ?? GATED_BEFORE_PIN,
  };
  if (waiter === "done" && o.status === undefined) {
    const init = (GATED_BEFORE_PIN.initContainerStatuses ?? []).map((s) => ({
      ...s,
      state: { terminated: { exitCode: 0, reason: "Completed" } },
    }));
    pod.status = { ...GATED_BEFORE_PIN, initContainerStatuses: init };
  }
  if (waiter === "none") pod.status = { ...pod.status, initContainerStatuses: [] };
  return pod;
}

/** The probe the reconciler creates for `pod`, created at second `created`, in kubelet status `status`. */
export function probeFor(pod: Pod, created: number, status: PodStatus, m: Migrator = migrator()): Pod {
  const probe = buildProbePod(m, probeKeyOf(pod, pod.spec.containers[0]!));
  probe.metadata.uid = `uid-${probe.metadata.name}`;
  probe.metadata.creationTimestamp = at(created);
  probe.status = status;
  return probe;
}

export type JobState = "active" | "succeeded" | "failed";

/** The migration Job of `digest`, as the Job controller reports it in `state`. */
export function job(digest: string, state: JobState, extra: { retryHandled?: string; m?: Migrator } = {}): KubeObject {
  const template = { metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "app", image: IMAGE.tag }] } };
  const input = { migrator: extra.m ?? migrator(), template, digest };
  const built = buildMigrationJob(extra.retryHandled ? { ...input, retry: extra.retryHandled } : input).job;
  built.metadata.uid = `uid-${built.metadata.name}`;
  built.status =
    state === "active"
      ? { active: 1 }
      : state === "succeeded"
        ? { succeeded: 1, completionTime: at(100), conditions: [{ type: "Complete", status: "True" }] }
        : { failed: 1, conditions: [{ type: "Failed", status: "True", reason: "BackoffLimitExceeded" }] };
  return built;
}

export function node(name: string, nodeInfo: Record<string, string> = NODE_INFO_CONTAINERD): Node {
  return { apiVersion: "v1", kind: "Node", metadata: { name }, status: { nodeInfo } };
}

export function snapshot(over: Partial<Snapshot> & { pins?: Map<string, PinRecord> } = {}): Snapshot {
  return {
    migrator: migrator(),
    pods: [],
    jobs: [],
    owners: owners(),
    nodes: new Map([
      ["node-1", node("node-1")],
      ["node-2", node("node-2")],
    ]),
    pins: new Map(),
    probeTimeoutSeconds: 300,
    ...over,
  };
}
