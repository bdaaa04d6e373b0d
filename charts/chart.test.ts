// The Helm chart, rendered by the real helm: it lints, renders with defaults and with every optional part,
// renders what reconciler/deploy holds (same names, RBAC rules, ports, flags, probes), and carries exact
// copies of the CRD and of the argocd-cm snippet.
import { readFileSync } from "node:fs";
import path from "node:path";
import t from "tap";
import type { Test } from "tap";
import { parse } from "yaml";
import { CHART_COPIES } from "./copies.ts";
import {
  NAMESPACED_DEPLOY_DIR,
  RECONCILER_DEPLOY_DIR,
  ROOT,
  keyOf,
  lintChart,
  parseManifests,
  renderChart,
  renderKustomize,
} from "./render.ts";
import type { Manifest } from "./render.ts";

function render(values: Record<string, unknown> = {}, namespace?: string): Manifest[] {
  return parseManifests(renderChart(values, namespace === undefined ? {} : { namespace }), "helm template");
}

function find(objects: Manifest[], kind: string, name?: string): Manifest {
  const hit = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (!hit) throw new Error(`no ${kind}${name === undefined ? "" : ` ${name}`} in ${objects.map(keyOf).join(", ")}`);
  return hit;
}

interface PodSpec {
  containers: Array<{ image: string; args: string[]; resources: unknown }>;
  [field: string]: unknown;
}
function podSpec(objects: Manifest[]): PodSpec {
  return (find(objects, "Deployment")["spec"] as { template: { spec: PodSpec } }).template.spec;
}

t.test("helm lint --strict passes, with defaults and with every option on", async (t) => {
  t.match(lintChart(), /1 chart\(s\) linted, 0 chart\(s\) failed/);
  t.match(
    lintChart({
      metrics: { serviceMonitor: { enabled: true } },
      watchNamespaces: ["a"],
      argocd: { configMap: { enabled: false } },
    }),
    /0 chart\(s\) failed/,
  );
});

t.test("the chart carries exact copies of the CRD and the argocd-cm snippet (node charts/generate.ts)", async (t) => {
  for (const { from, to } of CHART_COPIES) t.equal(readFileSync(to, "utf8"), readFileSync(from, "utf8"), to);
});

/** The chart renders every object of a `kubectl kustomize` directory: the same spec, the same labels and more. */
function rendersWhatKustomizeHolds(t: Test, chart: Manifest[], dir: string): Manifest[] {
  const raw = parseManifests(renderKustomize(dir), `kubectl kustomize ${path.relative(ROOT, dir)}`);
  t.ok(raw.length >= 8, `${raw.length} objects in ${path.relative(ROOT, dir)}`);
  for (const want of raw) {
    // Helm does not create the release namespace's Namespace object (helm install --create-namespace does).
    if (want.kind === "Namespace") continue;
    const key = keyOf(want);
    const got = chart.find((o) => keyOf(o) === key);
    if (!got) {
      t.fail(`the chart renders ${key}`);
      continue;
    }
    // Labels: the chart adds Helm's; it keeps every label the Kustomize install sets.
    t.match(got.metadata.labels ?? {}, want.metadata.labels ?? {}, `${key}: labels`);
    const strip = (m: Manifest): unknown => {
      const copy = structuredClone(m);
      delete copy.metadata.labels;
      if (copy.kind === "Deployment") {
        const template = (copy["spec"] as { template: { metadata: { labels?: unknown } } }).template;
        delete template.metadata.labels;
      }
      return copy;
    };
    t.same(strip(got), strip(want), `${key}: everything but labels`);
    if (want.kind === "Deployment") {
      const labels = (m: Manifest) =>
        (m["spec"] as { template: { metadata: { labels: object } } }).template.metadata.labels;
      t.match(labels(got), labels(want), `${key}: pod template labels`);
    }
  }
  return raw;
}

t.test("with defaults it renders what reconciler/deploy holds", async (t) => {
  const chart = render();
  const raw = rendersWhatKustomizeHolds(t, chart, RECONCILER_DEPLOY_DIR);
  const extra = chart.filter((o) => !raw.some((r) => keyOf(r) === keyOf(o))).map(keyOf);
  t.same(
    extra,
    ["ConfigMap/digest-migrations-system/digest-migrations-argocd-cm"],
    "and only the argocd-cm keys besides",
  );
});

t.test("with watchNamespaces it renders what the deploy/namespaced overlay holds", async (t) => {
  const chart = render({ watchNamespaces: ["apps"], argocd: { configMap: { enabled: false } } });
  const raw = rendersWhatKustomizeHolds(t, chart, NAMESPACED_DEPLOY_DIR);
  t.same(chart.filter((o) => !raw.some((r) => keyOf(r) === keyOf(o))).map(keyOf), [], "and nothing else");
});

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
const rulesOf = (m: Manifest): Rule[] => m["rules"] as Rule[];
const clusterScoped = (objects: Manifest[]): string[] =>
  objects.filter((o) => o.kind === "ClusterRole" || o.kind === "ClusterRoleBinding").map(keyOf);

t.test("watchNamespaces: a Role in each watched namespace, nothing cluster-wide", async (t) => {
  const cluster = rulesOf(find(render(), "ClusterRole"));
  const objects = render({ watchNamespaces: ["shop", "billing"] }, "ops");
  t.same(clusterScoped(objects), [], "no ClusterRole, no ClusterRoleBinding");
  for (const namespace of ["shop", "billing"]) {
    const role = objects.find((o) => o.kind === "Role" && o.metadata.namespace === namespace);
    t.same(
      role && rulesOf(role),
      cluster.filter((r) => !r.resources.includes("nodes")),
      `Role in ${namespace}: the ClusterRole's rules but nodes (cluster-scoped)`,
    );
    const binding = objects.find((o) => o.kind === "RoleBinding" && o.metadata.namespace === namespace);
    t.same(binding?.["roleRef"], { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role?.metadata.name });
    t.same(binding?.["subjects"], [{ kind: "ServiceAccount", name: "digest-migrations-reconciler", namespace: "ops" }]);
  }
  t.same(
    objects.filter((o) => o.kind === "Role").map(keyOf),
    [
      "Role/shop/digest-migrations-reconciler",
      "Role/billing/digest-migrations-reconciler",
      "Role/ops/digest-migrations-reconciler-leader-election",
    ],
    "Roles in the watched namespaces and the leader Lease's in the release namespace, no other",
  );
  const args = podSpec(objects).containers[0]?.args ?? [];
  t.ok(args.includes("--namespace=shop,billing") && args.includes("--no-watch-nodes"), "nodes are not watched");
  t.notOk(podSpec(render()).containers[0]?.args.includes("--no-watch-nodes"), "they are with a ClusterRole");

  const authenticated = render({ watchNamespaces: ["shop"], waiterAuth: "required" }, "ops");
  t.same(
    clusterScoped(authenticated),
    [
      "ClusterRole//digest-migrations-reconciler-token-review",
      "ClusterRoleBinding//digest-migrations-reconciler-token-review",
    ],
    "waiterAuth: TokenReview is cluster-scoped, so one ClusterRole for it",
  );
  t.same(rulesOf(find(authenticated, "ClusterRole")), [
    { apiGroups: ["authentication.k8s.io"], resources: ["tokenreviews"], verbs: ["create"] },
  ]);
});

t.test("the argocd-cm ConfigMap holds the snippet's keys", async (t) => {
  const snippet = parse(readFileSync(CHART_COPIES[1]!.from, "utf8")) as { data: Record<string, string> };
  t.same(find(render(), "ConfigMap", "digest-migrations-argocd-cm")["data"], snippet.data);
  t.notOk(
    render({ argocd: { configMap: { enabled: false } } }).some((o) => o.kind === "ConfigMap"),
    "argocd.configMap.enabled=false renders none",
  );
});

t.test("ServiceMonitor: off by default, on with metrics.serviceMonitor.enabled", async (t) => {
  t.notOk(render().some((o) => o.kind === "ServiceMonitor"));
  const objects = render({
    metrics: { serviceMonitor: { enabled: true, interval: "15s", scrapeTimeout: "10s", labels: { release: "kps" } } },
  });
  const monitor = find(objects, "ServiceMonitor");
  t.equal(monitor.apiVersion, "monitoring.coreos.com/v1");
  t.equal(monitor.metadata.labels?.["release"], "kps");
  const spec = monitor["spec"] as {
    selector: { matchLabels: Record<string, string> };
    endpoints: Array<Record<string, string>>;
  };
  const service = find(objects, "Service");
  t.same(spec.selector.matchLabels, { "app.kubernetes.io/name": "digest-migrations-reconciler" });
  t.match(service.metadata.labels ?? {}, spec.selector.matchLabels, "it selects the Service");
  t.same(spec.endpoints, [{ port: "metrics", path: "/metrics", interval: "15s", scrapeTimeout: "10s" }]);
});

t.test("values reach the Deployment", async (t) => {
  const values = {
    image: { repository: "registry.example/dm/reconciler", tag: "1.2.3" },
    replicas: 3,
    logLevel: "debug",
    watchNamespaces: ["shop", "billing"],
    extraArgs: ["--workers=8"],
    resources: { requests: { cpu: "100m", memory: "256Mi" }, limits: { memory: "1Gi" } },
    nodeSelector: { "kubernetes.io/os": "linux" },
    tolerations: [{ key: "dedicated", operator: "Equal", value: "infra", effect: "NoSchedule" }],
    affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [] } } },
    priorityClassName: "system-cluster-critical",
    imagePullSecrets: [{ name: "pull" }],
  };
  const objects = render(values);
  const deployment = find(objects, "Deployment");
  t.equal((deployment["spec"] as { replicas: number }).replicas, 3);
  const pod = podSpec(objects);
  const [container] = pod.containers;
  t.equal(container?.image, "registry.example/dm/reconciler:1.2.3");
  t.same(container?.resources, values.resources);
  t.ok(container?.args.includes("--log-level=debug"));
  t.ok(container?.args.includes("--namespace=shop,billing"));
  t.ok(container?.args.includes("--workers=8"));
  t.same(pod["nodeSelector"], values.nodeSelector);
  t.same(pod["tolerations"], values.tolerations);
  t.same(pod["affinity"], values.affinity);
  t.equal(pod["priorityClassName"], "system-cluster-critical");
  t.same(pod["imagePullSecrets"], [{ name: "pull" }]);

  const pinned = podSpec(render({ image: { digest: `sha256:${"a".repeat(64)}` } })).containers[0];
  t.equal(pinned?.image, `ghcr.io/digest-migrations/reconciler@sha256:${"a".repeat(64)}`, "image.digest pins");
  const defaults = podSpec(render()).containers[0];
  t.notOk(
    defaults?.args.some((a) => a.startsWith("--namespace=")),
    "all namespaces by default",
  );
  t.notOk(render({ podDisruptionBudget: { enabled: false } }).some((o) => o.kind === "PodDisruptionBudget"));
});

t.test("the PodDisruptionBudget follows the cluster version; older clusters are refused", async (t) => {
  const pdbVersion = (kubeVersion: string): unknown =>
    find(parseManifests(renderChart({}, { kubeVersion }), "helm template"), "PodDisruptionBudget").apiVersion;
  t.equal(pdbVersion("1.33.0"), "policy/v1");
  t.equal(pdbVersion("1.21.0-eks-1"), "policy/v1", "a provider's pre-release suffix counts as 1.21");
  t.equal(pdbVersion("1.20.2"), "policy/v1beta1", "1.20 serves PodDisruptionBudget as policy/v1beta1 only");
  t.throws(() => renderChart({}, { kubeVersion: "1.19.16" }), /incompatible with Kubernetes v1\.19\.16/);
});

t.test("another release namespace and fullname move every reference along", async (t) => {
  const objects = render({ fullnameOverride: "dm" }, "ops");
  const name = "dm-reconciler";
  for (const kind of ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget"]) {
    t.ok(find(objects, kind, name), `${kind} ${name}`);
  }
  t.ok(find(objects, "Service", "dm"));
  for (const kind of ["ClusterRoleBinding", "RoleBinding"]) {
    t.same(find(objects, kind)["subjects"], [{ kind: "ServiceAccount", name, namespace: "ops" }], `${kind} subject`);
  }
  const lease = (find(objects, "Role")["rules"] as Array<{ resourceNames?: string[] }>).find((r) => r.resourceNames);
  t.same(lease?.resourceNames, [name], "the Role names the Lease");
  t.ok(podSpec(objects).containers[0]?.args.includes(`--leader-election-id=${name}`), "the flag names the same Lease");
  for (const o of objects)
    if (o.kind !== "ClusterRole" && o.kind !== "ClusterRoleBinding" && o.kind !== "CustomResourceDefinition") {
      t.equal(o.metadata.namespace, "ops", `${keyOf(o)} in the release namespace`);
    }
});

t.test("hostNetwork: the node's network namespace, shared ports, no host ports, numeric probe ports", async (t) => {
  t.match(
    lintChart({ hostNetwork: true, bindAddress: "127.0.0.1", ports: { waiter: 31001, metrics: 31002 } }),
    /0 chart\(s\) failed/,
  );
  const objects = render({
    hostNetwork: true,
    bindAddress: "127.0.0.1",
    ports: { waiter: 31001, metrics: 31002 },
    extraEnv: [{ name: "KUBERNETES_SERVICE_HOST", value: "127.0.0.1" }],
  });
  const spec = podSpec(objects) as PodSpec & {
    hostNetwork?: boolean;
    dnsPolicy?: string;
    containers: Array<{
      args: string[];
      ports?: unknown;
      env: { name: string; value?: string }[];
      readinessProbe: { httpGet: { port: unknown } };
      livenessProbe: { httpGet: { port: unknown } };
      startupProbe: { httpGet: { port: unknown } };
    }>;
  };
  const c = spec.containers[0]!;
  t.equal(spec.hostNetwork, true);
  t.equal(spec.dnsPolicy, "ClusterFirstWithHostNet");
  t.equal(c.ports, undefined, "no container ports (they would be host ports: one replica per node)");
  for (const flag of ["--waiter-port=31001", "--metrics-port=31002", "--bind-address=127.0.0.1", "--reuse-port"])
    t.ok(c.args.includes(flag), `args hold ${flag}`);
  for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) t.equal(probe.httpGet.port, 31002);
  t.ok(
    c.env.some((e) => e.name === "KUBERNETES_SERVICE_HOST" && e.value === "127.0.0.1"),
    "extraEnv reaches the container",
  );
  const service = find(objects, "Service") as Manifest & { spec: { ports: { port: number; targetPort: unknown }[] } };
  t.same(
    service.spec.ports.map((p) => [p.port, p.targetPort]),
    [
      [31001, 31001],
      [31002, 31002],
    ],
  );
  const defaults = podSpec(render()) as PodSpec & { hostNetwork?: boolean; containers: Array<{ args: string[] }> };
  t.equal(defaults.hostNetwork, undefined, "off by default");
  t.notOk(defaults.containers[0]!.args.includes("--reuse-port"));
});

t.test("waiterAuth: the flag and TokenReviews only when waiters are authenticated", async (t) => {
  const rules = (objects: Manifest[]): Rule[] => rulesOf(find(objects, "ClusterRole"));
  const defaults = render();
  t.notOk(
    rules(defaults).some((r) => r.resources.includes("tokenreviews")),
    "none (the default): no TokenReviews",
  );
  t.notOk(podSpec(defaults).containers[0]?.args.some((a: string) => a.startsWith("--waiter-auth")));
  for (const mode of ["optional", "required"]) {
    const objects = render({ waiterAuth: mode });
    t.ok(podSpec(objects).containers[0]?.args.includes(`--waiter-auth=${mode}`), `${mode}: the flag`);
    t.same(
      rules(objects).find((r) => r.resources.includes("tokenreviews")),
      { apiGroups: ["authentication.k8s.io"], resources: ["tokenreviews"], verbs: ["create"] },
      `${mode}: create on TokenReviews, nothing else`,
    );
  }
  t.throws(() => render({ waiterAuth: "yes" }), /values\.waiterAuth: "yes" is not one of none, optional, required/);
});
