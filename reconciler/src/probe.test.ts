import t from "tap";
import type { Migrator, Pod } from "@digest-migrations/shared";
import { PROBE_COMMAND, buildProbePod, probeKeyOf, probeName } from "./probe.ts";

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
