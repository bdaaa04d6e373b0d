import t from "tap";
import type { Migrator } from "./migrator.ts";
import type { Node, Pod, PodStatus } from "./k8s.ts";
import {
  PROBE_COMMAND,
  PROBE_CONTAINER,
  buildProbePod,
  isProbeOf,
  probeKeyOf,
  probeName,
  probeServes,
  readProbe,
} from "./probe.ts";
import type { ProbeOutcome } from "./probe.ts";
import * as kubelet from "./testdata/kubelet-statuses.ts";

const migrator: Migrator = {
  apiVersion: "migrations.coderanger.net/v1beta1",
  kind: "Migrator",
  metadata: { name: "db", namespace: "ns", uid: "uid-1" },
  spec: { selector: {} },
};
const pod: Pod = {
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: "web-1", namespace: "ns" },
  spec: {
    nodeName: "node-1",
    serviceAccountName: "web",
    imagePullSecrets: [{ name: "pull" }],
    tolerations: [{ key: "k", operator: "Exists" }],
    containers: [{ name: "app", image: "registry.example/app:latest", imagePullPolicy: "Always" }],
  },
};

t.test("the probe reproduces the pod's pull on its node, and cannot run anything", async (t) => {
  const key = probeKeyOf(pod, pod.spec.containers[0]!);
  const probe = buildProbePod(migrator, key);
  t.equal(probe.spec.nodeName, "node-1");
  t.equal(probe.spec.containers[0]?.image, "registry.example/app:latest");
  t.equal(probe.spec.containers[0]?.imagePullPolicy, "Always");
  t.same(probe.spec.containers[0]?.command, [PROBE_COMMAND]);
  t.same(probe.spec.imagePullSecrets, [{ name: "pull" }]);
  t.equal(probe.spec.serviceAccountName, "web");
  t.same(probe.spec.tolerations, [{ key: "k", operator: "Exists" }]);
  t.equal(probe.spec.restartPolicy, "Never");
  t.equal(probe.spec.automountServiceAccountToken, false);
  t.equal(probe.metadata.ownerReferences?.[0]?.uid, "uid-1");
  t.equal(probe.metadata.labels?.["migrations.coderanger.net/role"], "probe");
});

t.test("probe names are deterministic, distinct per node and image, and DNS labels", async (t) => {
  const key = probeKeyOf(pod, pod.spec.containers[0]!);
  t.equal(probeName("db", key), probeName("db", { ...key }));
  t.not(probeName("db", key), probeName("db", { ...key, node: "node-2" }));
  t.not(probeName("db", key), probeName("db", { ...key, image: "registry.example/app:v2" }));
  const long = probeName("x".repeat(100), key);
  t.ok(long.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(long), long);
});

t.test("the fixtures' probe container and command are the probe's", async (t) => {
  t.equal(kubelet.PROBE_CONTAINER, PROBE_CONTAINER);
  t.equal(kubelet.PROBE_COMMAND, PROBE_COMMAND);
});

t.test("isProbeOf: the probe role and a controller reference to the Migrator", async (t) => {
  const probe = buildProbePod(migrator, probeKeyOf(pod, pod.spec.containers[0]!));
  t.ok(isProbeOf(probe, migrator));
  t.notOk(isProbeOf(probe, { ...migrator, metadata: { ...migrator.metadata, uid: "uid-2" } }), "another Migrator's");
  t.notOk(isProbeOf(pod, migrator), "an application pod");
});

t.test("probeServes only pods created no later than the probe", async (t) => {
  t.ok(probeServes("2024-01-01T00:00:10Z", "2024-01-01T00:00:09Z"));
  t.ok(probeServes("2024-01-01T00:00:10Z", "2024-01-01T00:00:10Z"), "the same second counts as before");
  t.notOk(probeServes("2024-01-01T00:00:10Z", "2024-01-01T00:00:11Z"));
  t.notOk(probeServes(undefined, "2024-01-01T00:00:11Z"));
  t.notOk(probeServes("2024-01-01T00:00:10Z", undefined));
});

const containerd: Node = {
  apiVersion: "v1",
  kind: "Node",
  metadata: { name: "node-1" },
  status: { nodeInfo: kubelet.NODE_INFO_CONTAINERD },
};
const crio: Node = {
  apiVersion: "v1",
  kind: "Node",
  metadata: { name: "node-1" },
  status: { nodeInfo: kubelet.NODE_INFO_CRIO },
};

t.test("readProbe decides every state a kubelet leaves a probe in", async (t) => {
  const probe = (status: PodStatus): Pod => ({
    ...buildProbePod(migrator, { ...probeKeyOf(pod, pod.spec.containers[0]!), image: kubelet.IMAGE.tag }),
    status,
  });
  const cases: {
    name: string;
    status: PodStatus;
    node?: Node;
    want: { kind: ProbeOutcome["kind"]; reason?: string; digest?: string; message?: RegExp };
  }[] = [
    {
      name: "only the API server's status",
      status: kubelet.PROBE_CREATED_ONLY,
      want: { kind: "pending", message: /no container status yet/ },
    },
    {
      name: "ContainerCreating (pulling)",
      status: kubelet.PROBE_CONTAINER_CREATING,
      want: { kind: "pending", message: /ContainerCreating/ },
    },
    {
      name: "containerd StartError with imageID",
      status: kubelet.PROBE_START_ERROR,
      want: { kind: "digest", digest: kubelet.IMAGE.digest },
    },
    {
      name: "RunContainerError with imageID (OnFailure crash loop)",
      status: kubelet.PROBE_RUN_CONTAINER_ERROR_WITH_IMAGE_ID,
      want: { kind: "digest", digest: kubelet.IMAGE.digest },
    },
    {
      name: "a configuration ID is no digest",
      status: kubelet.PROBE_START_ERROR_CONFIG_ID,
      want: { kind: "noDigest", message: /configuration ID/ },
    },
    {
      name: "CRI-O: CreateContainerError without imageID",
      status: kubelet.PROBE_CREATE_CONTAINER_ERROR,
      node: crio,
      want: {
        kind: "unsupported",
        reason: "CreateContainerError",
        message: /runs cri-o:\/\/1\.20\.0 \(node\.status\.nodeInfo\.containerRuntimeVersion\)/,
      },
    },
    {
      name: "CRI-O: RunContainerError without imageID",
      status: kubelet.PROBE_RUN_CONTAINER_ERROR,
      node: crio,
      want: { kind: "unsupported", reason: "RunContainerError" },
    },
    {
      name: "containerd: CreateContainerError is the kubelet's to retry, named as such",
      status: kubelet.PROBE_CREATE_CONTAINER_ERROR,
      node: containerd,
      want: {
        kind: "failed",
        reason: "CreateContainerError",
        message: /\(containerd:\/\/1\.6\.20\) cannot create the container/,
      },
    },
    {
      name: "an unknown node: the runtime is not guessed",
      status: kubelet.PROBE_CREATE_CONTAINER_ERROR,
      want: { kind: "failed", message: /unknown: the node is not in the cache/ },
    },
    {
      name: "CreateContainerConfigError",
      status: kubelet.PROBE_CREATE_CONTAINER_CONFIG_ERROR,
      want: {
        kind: "failed",
        reason: "CreateContainerConfigError",
        message: /cannot configure the container.*runAsNonRoot/,
      },
    },
    {
      name: "ErrImagePull",
      status: kubelet.PROBE_ERR_IMAGE_PULL,
      want: {
        kind: "failed",
        reason: "ErrImagePull",
        message: /cannot pull 127\.0\.0\.1:5000\/app:never-pushed: ErrImagePull: rpc error/,
      },
    },
    {
      name: "ImagePullBackOff",
      status: kubelet.PROBE_IMAGE_PULL_BACK_OFF,
      want: { kind: "failed", reason: "ImagePullBackOff" },
    },
    {
      name: "refused by the kubelet's admission: OutOfcpu",
      status: kubelet.PROBE_REJECTED_OUT_OF_CPU,
      want: { kind: "ended", reason: "OutOfcpu", message: /OutOfcpu: Pod Node didn't have enough resource: cpu/ },
    },
    {
      name: "refused: NodeAffinity",
      status: kubelet.PROBE_REJECTED_NODE_AFFINITY,
      want: { kind: "ended", reason: "NodeAffinity" },
    },
    {
      name: "evicted while pulling",
      status: kubelet.PROBE_EVICTED_WHILE_PULLING,
      want: { kind: "ended", reason: "Evicted" },
    },
  ];
  for (const c of cases) t.match(readProbe(probe(c.status), c.node), c.want, c.name);
  t.match(
    readProbe(probe(kubelet.PROBE_START_ERROR), crio),
    { kind: "digest" },
    "an imageID wins whatever the runtime",
  );
  t.notMatch(
    readProbe(probe(kubelet.PROBE_CREATE_CONTAINER_ERROR), crio),
    { message: /pulling/ },
    "never a false 'still pulling'",
  );
});
