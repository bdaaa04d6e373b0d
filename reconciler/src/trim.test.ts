import t from "tap";
import { API_VERSION, KIND } from "@digest-migrations/shared";
import type { KubeObject } from "@digest-migrations/shared";
import { LAST_APPLIED_ANNOTATION, trimForCache } from "./trim.ts";

const managedFields = [{ manager: "kube-controller-manager", operation: "Update", fieldsV1: { "f:status": {} } }];

t.test("pods lose managedFields and the last-applied annotation, and nothing else", async (t) => {
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: "web-1",
      namespace: "apps",
      labels: { app: "web" },
      annotations: { [LAST_APPLIED_ANNOTATION]: "{}", "migrations.coderanger.net/no-wait": "true" },
      ownerReferences: [{ apiVersion: "apps/v1", kind: "ReplicaSet", name: "web-abc", uid: "u" }],
      managedFields,
    },
    spec: { containers: [{ name: "app", image: "app:latest" }] },
    status: { phase: "Running" },
  } as KubeObject;
  const expected = structuredClone(pod);
  delete (expected.metadata as { managedFields?: unknown }).managedFields;
  delete expected.metadata.annotations![LAST_APPLIED_ANNOTATION];
  t.equal(trimForCache(pod), pod, "trimmed in place");
  t.same(pod, expected);
});

t.test("pods keep of their status only what the decisions read", async (t) => {
  const containerStatuses = [{ name: "app", image: "app:latest", imageID: "", ready: false, state: { waiting: {} } }];
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "web-1" },
    spec: { nodeName: "n1", containers: [{ name: "app", image: "app:latest" }] },
    status: {
      phase: "Pending",
      reason: "r",
      message: "m",
      conditions: [{ type: "Ready", status: "False" }],
      hostIP: "10.0.0.1",
      podIP: "10.1.0.1",
      podIPs: [{ ip: "10.1.0.1" }],
      startTime: "2026-12-01T10:00:00Z",
      qosClass: "BestEffort",
      initContainerStatuses: containerStatuses,
      containerStatuses,
    },
  } as KubeObject;
  const spec = structuredClone(pod["spec"]);
  trimForCache(pod);
  t.same(pod["status"], {
    phase: "Pending",
    reason: "r",
    message: "m",
    initContainerStatuses: containerStatuses,
    containerStatuses,
  });
  t.same(pod["spec"], spec, "the spec is kept whole");
});

t.test("Migrators keep their annotations", async (t) => {
  const migrator = {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: "db", annotations: { [LAST_APPLIED_ANNOTATION]: "{}" }, managedFields },
    spec: { selector: {} },
  } as KubeObject;
  trimForCache(migrator);
  t.same(migrator.metadata, { name: "db", annotations: { [LAST_APPLIED_ANNOTATION]: "{}" } });
});

t.test("objects without either field are unchanged", async (t) => {
  const job = { apiVersion: "batch/v1", kind: "Job", metadata: { name: "j" }, spec: {} } as KubeObject;
  const before = structuredClone(job);
  t.same(trimForCache(job), before);
});

t.test("Nodes keep only their name, versions and status.nodeInfo", async (t) => {
  const nodeInfo = { containerRuntimeVersion: "containerd://1.6.20", kubeletVersion: "v1.20.2" };
  const node = {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name: "n1",
      uid: "u",
      resourceVersion: "7",
      labels: { a: "b" },
      annotations: { x: "y" },
      managedFields,
    },
    spec: { podCIDR: "10.0.0.0/24" },
    status: { nodeInfo, images: [{ names: ["app@sha256:x"], sizeBytes: 1 }], conditions: [] },
  } as KubeObject;
  trimForCache(node);
  t.same(node, {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: "n1", uid: "u", resourceVersion: "7" },
    status: { nodeInfo },
  });
});
