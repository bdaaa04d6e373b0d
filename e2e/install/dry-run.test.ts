// Everything the project ships for installation, and everything the plugin generates for the fixture
// applications, goes through the real API server with dryRun=All: the API server decodes, defaults,
// validates (OpenAPI and CRD structural schemas) and runs admission on each object and persists nothing.
// A new object is created (POST), as `helm install` and Argo CD's default (client-side) apply do; one that
// exists already (the CRDs below) is server-side applied. CustomResourceDefinitions an object depends on
// are applied for real first, as a sync or `helm install` would have done (an object of a kind nobody
// serves cannot even be dry-run).
//
// The e2e control plane is Kubernetes 1.20: it serves PodDisruptionBudget and CronJob only as
// policy/v1beta1 and batch/v1beta1. The chart is rendered for that version (as `helm install` and Argo CD
// do) and picks policy/v1beta1 itself; the Kustomize bases and fixtures, which need 1.21, have those
// objects dry-run at the older version (same fields for what the project writes), and the test says so.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import type { Test } from "tap";
import type { KubeObject } from "@digest-migrations/shared";
import { lintChart, parseManifests, renderChart, renderKustomize, RECONCILER_DEPLOY_DIR } from "../../charts/render.ts";
import { ROLLOUT_CRD, SERVICE_MONITOR_CRD } from "../harness/crds.ts";
import { kubernetesVersion } from "../cluster/cluster.ts";
import { sharedCluster } from "../harness/env.ts";
import { KubeClient } from "../kit/client.ts";
import { errorText } from "../kit/wait.ts";
import { describe, serverSideApply, waitEstablished } from "../pipeline/apply.ts";
import { readManifests, CRD_FILE } from "../pipeline/install.ts";
import { parseStream } from "../pipeline/sync.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const GOLDEN = path.join(ROOT, "plugin/test/golden");
const HERE = import.meta.dirname;

const cluster = await sharedCluster();
const admin = KubeClient.fromFile(cluster.adminKubeconfig);

for (const crd of [...readManifests(CRD_FILE), ROLLOUT_CRD, SERVICE_MONITOR_CRD]) {
  await serverSideApply(admin, crd);
  await waitEstablished(admin, crd.metadata.name ?? "");
}

/**
 * Dry-runs every object; namespaced ones without a namespace go to `namespace`. Namespaces are created for
 * real first, as `kubectl create namespace` or `helm install --create-namespace` would.
 */
async function dryRun(t: Test, objects: KubeObject[], namespace: string): Promise<void> {
  t.ok(objects.length > 0, "there is something to apply");
  for (const ns of new Set([namespace, ...objects.map((o) => o.metadata.namespace ?? namespace)])) {
    await cluster.ensureNamespace(ns);
  }
  const refused: string[] = [];
  for (const original of objects) {
    const object = await servedVersionOf(original);
    if (object !== original) t.comment(`${describe(original)} dry-run as ${object.apiVersion} (served by 1.20)`);
    try {
      const result = await dryRunCreateOrApply(object, namespace);
      if (result.kind !== object.kind) refused.push(`${describe(object)}: came back as ${result.kind}`);
    } catch (error) {
      refused.push(`${describe(object)}: ${errorText(error)}`);
    }
  }
  t.same(refused, [], `${objects.length} objects accepted: ${[...new Set(objects.map((o) => o.kind))].join(", ")}`);
}

async function dryRunCreateOrApply(object: KubeObject, namespace: string): Promise<KubeObject> {
  const ns = object.metadata.namespace ?? namespace;
  const collection = await admin.resourcePath(object.apiVersion, object.kind, ns);
  const body = collection.includes("/namespaces/")
    ? { ...object, metadata: { ...object.metadata, namespace: ns } }
    : object;
  try {
    return await admin.request<KubeObject>("POST", collection, { body, query: { dryRun: "All" } });
  } catch (error) {
    if ((error as { status?: number }).status !== 409) throw error;
    return serverSideApply(admin, object, namespace, { dryRun: true });
  }
}

/** The newer version's older twin, for the kinds a 1.20 API server serves only at the older version. */
const OLDER_TWIN: Record<string, string> = {
  "policy/v1 PodDisruptionBudget": "policy/v1beta1",
  "batch/v1 CronJob": "batch/v1beta1",
};

async function servedVersionOf(object: KubeObject): Promise<KubeObject> {
  const older = OLDER_TWIN[`${object.apiVersion} ${object.kind}`];
  if (older === undefined) return object;
  try {
    await admin.resourcePath(object.apiVersion, object.kind);
    return object;
  } catch {
    return { ...object, apiVersion: older };
  }
}

/** The chart renders for the control plane's version, as `helm install` and Argo CD (KUBE_VERSION) do. */
const kubeVersion = kubernetesVersion;

const asObjects = (stream: string, where: string): KubeObject[] => parseManifests(stream, where);

t.test("the Helm chart: lint, then every object of the default install", async (t) => {
  t.doesNotThrow(() => lintChart(), "helm lint --strict");
  await dryRun(t, asObjects(renderChart({}, { kubeVersion }), "helm template (defaults)"), "digest-migrations-system");
});

t.test("the Helm chart with every option on", async (t) => {
  const values = {
    replicas: 3,
    watchNamespaces: ["apps", "payments"],
    imagePullSecrets: [{ name: "registry" }],
    podAnnotations: { "example.com/team": "platform" },
    podLabels: { team: "platform" },
    nodeSelector: { "kubernetes.io/os": "linux" },
    tolerations: [{ key: "dedicated", operator: "Equal", value: "platform", effect: "NoSchedule" }],
    priorityClassName: "system-cluster-critical",
    extraArgs: ["--log-level=debug"],
    serviceAccount: { annotations: { "example.com/role": "reconciler" } },
    metrics: { serviceMonitor: { enabled: true, labels: { release: "prometheus" }, scrapeTimeout: "10s" } },
    argocd: { configMap: { enabled: true }, namespace: "argocd" },
  };
  t.doesNotThrow(() => lintChart(values), "helm lint --strict");
  const objects = asObjects(
    renderChart(values, { releaseName: "dm", namespace: "platform", kubeVersion }),
    "helm template",
  );
  t.ok(
    objects.some((o) => o.kind === "ServiceMonitor"),
    "the ServiceMonitor is rendered",
  );
  await dryRun(t, objects, "platform");
});

t.test("the Kustomize base (deploy/kustomize)", async (t) => {
  await dryRun(t, asObjects(renderKustomize(), "kubectl kustomize deploy/kustomize"), "digest-migrations-system");
});

t.test("the reconciler's own manifests (reconciler/deploy)", async (t) => {
  const stream = renderKustomize(RECONCILER_DEPLOY_DIR);
  await dryRun(t, asObjects(stream, "kubectl kustomize reconciler/deploy"), "digest-migrations-system");
});

t.test("the plugin sidecar patch on argocd-repo-server", async (t) => {
  // kustomize only reads files below its root, so the patch and a stand-in for Argo CD's repo server
  // (plugin/deploy/kustomize itself points at Argo CD's install.yaml on the network) are copied together.
  const dir = mkdtempSync(path.join(tmpdir(), "dm-sidecar-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(path.join(ROOT, "plugin/deploy/kustomize/repo-server-sidecar.yaml"), path.join(dir, "patch.yaml"));
  cpSync(path.join(HERE, "testdata/argocd-repo-server.yaml"), path.join(dir, "repo-server.yaml"));
  writeFileSync(
    path.join(dir, "kustomization.yaml"),
    "namespace: argocd\nresources: [repo-server.yaml]\npatches: [{path: patch.yaml}]\n",
  );
  const objects = asObjects(renderKustomize(dir), "the patched argocd-repo-server");
  const containers = (objects[0]?.["spec"] as { template: { spec: { containers: { name: string }[] } } }).template.spec
    .containers;
  t.same(
    containers.map((c) => c.name).sort(),
    ["argocd-repo-server", "digest-migrations"],
    "the sidecar sits beside the repo server",
  );
  await dryRun(t, objects, "argocd");
});

for (const app of ["seed", "plain", "kustomize", "helm"]) {
  t.test(`plugin generate output of the ${app} fixture`, async (t) => {
    // The golden files are generate's output for each fixture with Argo CD's environment
    // (plugin/test/cli.test.ts checks that byte for byte).
    const objects = parseStream(readFileSync(path.join(GOLDEN, `${app}.json`), "utf8"));
    await dryRun(t, objects, `fixture-${app}`);
  });
}
