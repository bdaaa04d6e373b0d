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
// do) and picks policy/v1beta1 itself. The Kustomize bases ship policy/v1 (they need 1.21, as
// docs/install.md says) and a fixture holds a batch/v1 CronJob: such an object is NOT validated here — no
// version is rewritten — and each test asserts exactly which objects it could not validate and why, so a
// new unvalidated object fails the test until it is listed.
//
// The plugin's output is also dry-run with Argo CD's resource tracking applied (the label
// app.kubernetes.io/instance, the annotation argocd.argoproj.io/tracking-id, and both), as the repo-server
// adds it before the controller applies anything.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import type { Test } from "tap";
import type { KubeObject } from "@digest-migrations/shared";
import {
  NAMESPACED_DEPLOY_DIR,
  RECONCILER_DEPLOY_DIR,
  lintChart,
  parseManifests,
  renderChart,
  renderKustomize,
} from "../../charts/render.ts";
import { ROLLOUT_CRD, SERVICE_MONITOR_CRD } from "../harness/crds.ts";
import { kubernetesVersion } from "../cluster/cluster.ts";
import { sharedCluster } from "../harness/env.ts";
import { KubeClient } from "../kit/client.ts";
import { errorText } from "../kit/wait.ts";
import { describe, serverSideApply, waitEstablished } from "../pipeline/apply.ts";
import { readManifests, CRD_FILE } from "../pipeline/install.ts";
import { parseStream } from "../pipeline/sync.ts";
import { track } from "../argocd/tracking.ts";
import type { TrackingMethod } from "../argocd/tracking.ts";

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
 * Dry-runs every object the control plane serves; namespaced ones without a namespace go to `namespace`.
 * Namespaces are created for real first, as `kubectl create namespace` or `helm install --create-namespace`
 * would. An object of a version this control plane does not serve cannot be validated: the test lists it
 * with the reason and requires the list to be exactly `unvalidated`.
 */
async function dryRun(t: Test, objects: KubeObject[], namespace: string, unvalidated: string[] = []): Promise<void> {
  t.ok(objects.length > 0, "there is something to apply");
  for (const ns of new Set([namespace, ...objects.map((o) => o.metadata.namespace ?? namespace)])) {
    await cluster.ensureNamespace(ns);
  }
  const refused: string[] = [];
  const notServed: string[] = [];
  for (const object of objects) {
    const reason = await notServedReason(object);
    if (reason !== undefined) {
      notServed.push(`${describe(object)}: ${reason}`);
      continue;
    }
    try {
      const result = await dryRunCreateOrApply(object, namespace);
      if (result.kind !== object.kind) refused.push(`${describe(object)}: came back as ${result.kind}`);
    } catch (error) {
      refused.push(`${describe(object)}: ${errorText(error)}`);
    }
  }
  const validated = objects.length - notServed.length;
  t.same(refused, [], `${validated} objects accepted: ${[...new Set(objects.map((o) => o.kind))].join(", ")}`);
  t.same(notServed, unvalidated, `not validated, because this control plane does not serve them: ${notServed.length}`);
  for (const line of notServed) t.comment(`NOT VALIDATED ${line}`);
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

/** Why the control plane cannot validate `object` (its apiVersion/kind is not served), or undefined. */
async function notServedReason(object: KubeObject): Promise<string | undefined> {
  try {
    await admin.resourcePath(object.apiVersion, object.kind);
    return undefined;
  } catch {
    return `${object.apiVersion} ${object.kind} is not served by Kubernetes ${kubernetesVersion}`;
  }
}

/** What Kubernetes 1.20 serves only at an older version, with the version that brings it. */
const PDB = (name: string): string =>
  `PodDisruptionBudget digest-migrations-system/${name}: policy/v1 PodDisruptionBudget is not served by Kubernetes ${kubernetesVersion}`;

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
  await dryRun(t, asObjects(renderKustomize(), "kubectl kustomize deploy/kustomize"), "digest-migrations-system", [
    PDB("digest-migrations-reconciler"),
  ]);
});

t.test("the reconciler's own manifests (reconciler/deploy)", async (t) => {
  const stream = renderKustomize(RECONCILER_DEPLOY_DIR);
  await dryRun(t, asObjects(stream, "kubectl kustomize reconciler/deploy"), "digest-migrations-system", [
    PDB("digest-migrations-reconciler"),
  ]);
});

t.test("the namespace-scoped overlay (deploy/namespaced)", async (t) => {
  const stream = renderKustomize(NAMESPACED_DEPLOY_DIR);
  await dryRun(t, asObjects(stream, "kubectl kustomize deploy/namespaced"), "digest-migrations-system", [
    PDB("digest-migrations-reconciler"),
  ]);
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

  // With the optional discovery component: a second sidecar and the ConfigMap holding its plugin.yaml.
  writeFileSync(
    path.join(dir, "kustomization.yaml"),
    `namespace: argocd\nresources: [repo-server.yaml]\npatches: [{path: patch.yaml}]\ncomponents: [${path.relative(dir, path.join(ROOT, "plugin/deploy/kustomize/discovery"))}]\n`,
  );
  const withDiscovery = asObjects(renderKustomize(dir), "argocd-repo-server with the discovery component");
  const deployment = withDiscovery.find((o) => o.kind === "Deployment");
  const names = (deployment?.["spec"] as { template: { spec: { containers: { name: string }[] } } }).template.spec
    .containers;
  t.same(
    names.map((c) => c.name).sort(),
    ["argocd-repo-server", "digest-migrations", "digest-migrations-discovery"],
    "both sidecars",
  );
  t.ok(
    withDiscovery.some(
      (o) => o.kind === "ConfigMap" && o.metadata.name?.startsWith("digest-migrations-discovery-plugin-"),
    ),
    "the discovery plugin.yaml's ConfigMap (name with Kustomize's hash suffix)",
  );
  await dryRun(t, withDiscovery, "argocd");
});

// What each golden file holds that Kubernetes 1.20 cannot serve (batch/v1 CronJob arrived in 1.21).
const FIXTURE_UNVALIDATED: Record<string, string[]> = {
  seed: [],
  plain: [`CronJob nightly: batch/v1 CronJob is not served by Kubernetes ${kubernetesVersion}`],
  kustomize: [],
  helm: [],
};

for (const app of ["seed", "plain", "kustomize", "helm"]) {
  t.test(`plugin generate output of the ${app} fixture, untracked and with each tracking method`, async (t) => {
    // The golden files are generate's output for each fixture with Argo CD's environment
    // (plugin/test/cli.test.ts checks that byte for byte), read as Argo CD 2.6 … 3.0 read it.
    const namespace = `fixture-${app}`;
    const objects = parseStream(readFileSync(path.join(GOLDEN, `${app}.json`), "utf8"));
    const unvalidated = FIXTURE_UNVALIDATED[app] ?? [];
    await dryRun(t, objects, namespace, unvalidated);
    for (const method of ["label", "annotation", "annotation+label"] satisfies TrackingMethod[]) {
      const tracked = objects.map((o) => track(o, method, `${app}-app`, namespace));
      t.ok(
        tracked.every(
          (o) =>
            o.kind === "CustomResourceDefinition" ||
            o.metadata.labels?.["app.kubernetes.io/instance"] ||
            o.metadata.annotations?.["argocd.argoproj.io/tracking-id"],
        ),
        `${method}: every object is tracked`,
      );
      await dryRun(t, tracked, namespace, unvalidated);
    }
  });
}
