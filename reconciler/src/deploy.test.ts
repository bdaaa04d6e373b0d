// Static checks of the install manifests in reconciler/deploy: least-privilege RBAC (never
// Secrets or ConfigMaps, no wildcards), a hardened Deployment, and consistent names and ports.
import t from "tap";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { parseAllDocuments } from "yaml";
import { WAITER_API_PORT, WAITER_COMMAND } from "@digest-migrations/shared";

const DEPLOY = fileURLToPath(new URL("../deploy/", import.meta.url));

interface Doc {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}
interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

function load(file: string): Doc[] {
  const docs = parseAllDocuments(readFileSync(path.join(DEPLOY, file), "utf8"));
  return docs.map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`);
    return d.toJSON() as Doc;
  });
}

const files = readdirSync(DEPLOY).filter((f) => f.endsWith(".yaml"));
const all = files.flatMap((f) => load(f).map((doc) => ({ file: f, doc })));
const find = (kind: string, name?: string): Doc => {
  const hit = all.find((x) => x.doc.kind === kind && (name === undefined || x.doc.metadata.name === name));
  if (!hit) throw new Error(`no ${kind}${name ? ` ${name}` : ""} in ${DEPLOY}`);
  return hit.doc;
};
const rulesOf = (doc: Doc): Rule[] => doc["rules"] as Rule[];

t.test("no role grants anything on Secrets or ConfigMaps, and nothing is a wildcard", (t) => {
  const roles = all.filter((x) => x.doc.kind === "ClusterRole" || x.doc.kind === "Role");
  t.ok(roles.length >= 2, "a ClusterRole and a Role");
  for (const { file, doc } of roles) {
    for (const rule of rulesOf(doc)) {
      const where = `${file} ${doc.kind}/${doc.metadata.name} ${JSON.stringify(rule)}`;
      t.notOk(
        rule.resources.some((r) => /^(secrets|configmaps)(\/|$)/.test(r)),
        `${where}: no secrets/configmaps`,
      );
      t.notOk([...rule.apiGroups, ...rule.resources, ...rule.verbs].includes("*"), `${where}: no wildcard`);
      t.notOk(
        rule.verbs.some((v) => ["escalate", "bind", "impersonate", "deletecollection"].includes(v)),
        `${where}: no dangerous verbs`,
      );
      t.notOk("nonResourceURLs" in rule, `${where}: no non-resource URLs`);
    }
  }
  t.end();
});

/** What the reconciler's code uses, per (group, resource): reconcile.ts writes, cache.ts lists and watches. */
const EXPECTED_CLUSTER: Record<string, string[]> = {
  "migrations.coderanger.net/migrators": ["get", "list", "watch"],
  "migrations.coderanger.net/migrators/status": ["patch", "update"],
  "migrations.coderanger.net/migrators/finalizers": ["update"],
  "/pods": ["create", "delete", "get", "list", "patch", "watch"],
  "batch/jobs": ["create", "delete", "get", "list", "watch"],
  "/nodes": ["list", "watch"],
  "apps/replicasets": ["list", "watch"],
  "apps/deployments": ["list", "watch"],
  "apps/statefulsets": ["list", "watch"],
  "apps/daemonsets": ["list", "watch"],
  "batch/cronjobs": ["list", "watch"],
  "argoproj.io/rollouts": ["list", "watch"],
  "/events": ["create", "patch"],
};

function grants(rules: Rule[]): Record<string, string[]> {
  const out: Record<string, Set<string>> = {};
  for (const rule of rules)
    for (const group of rule.apiGroups)
      for (const resource of rule.resources)
        for (const verb of rule.verbs) (out[`${group}/${resource}`] ??= new Set()).add(verb);
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, [...v].sort()]));
}

t.test("the ClusterRole grants exactly the verbs the controller uses", (t) => {
  t.same(grants(rulesOf(find("ClusterRole", "digest-migrations-reconciler"))), EXPECTED_CLUSTER);
  t.end();
});

t.test("the leader-election Role covers only Leases, get/update limited to the one Lease", (t) => {
  const rules = rulesOf(find("Role"));
  t.same(grants(rules), { "coordination.k8s.io/leases": ["create", "get", "update"] });
  for (const rule of rules)
    if (rule.verbs.includes("get") || rule.verbs.includes("update"))
      t.same(rule.resourceNames, ["digest-migrations-reconciler"], "named Lease only");
  t.end();
});

t.test("bindings point at the reconciler's ServiceAccount", (t) => {
  const sa = find("ServiceAccount");
  for (const kind of ["ClusterRoleBinding", "RoleBinding"]) {
    const binding = find(kind);
    t.same(
      binding["subjects"],
      [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: "digest-migrations-system" }],
      `${kind} subject`,
    );
    const roleRef = binding["roleRef"] as { kind: string; name: string };
    t.ok(find(roleRef.kind, roleRef.name), `${kind} refers to an existing ${roleRef.kind}`);
  }
  t.end();
});

interface Container {
  name: string;
  image: string;
  command: string[];
  args: string[];
  ports: { name: string; containerPort: number }[];
  securityContext: Record<string, unknown>;
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  resources: { requests: Record<string, string>; limits: Record<string, string> };
}

t.test("the Deployment is hardened, probed, spread and leader-elected", (t) => {
  const deployment = find("Deployment");
  const spec = deployment["spec"] as {
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: Record<string, unknown> };
  };
  t.equal(spec.replicas, 2);
  const pod = spec.template.spec;
  t.equal(pod["serviceAccountName"], find("ServiceAccount").metadata.name);
  t.match(pod["securityContext"], { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: "RuntimeDefault" } });
  t.ok(
    Array.isArray(pod["topologySpreadConstraints"]) && (pod["topologySpreadConstraints"] as unknown[]).length > 0,
    "spread",
  );
  const [container] = pod["containers"] as Container[];
  t.ok(container);
  if (!container) return t.end();
  t.match(container.securityContext, {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    runAsNonRoot: true,
    capabilities: { drop: ["ALL"] },
  });
  t.equal(container.livenessProbe.httpGet.path, "/healthz");
  t.equal(container.readinessProbe.httpGet.path, "/readyz");
  t.ok(
    container.resources.requests["cpu"] &&
      container.resources.requests["memory"] &&
      container.resources.limits["memory"],
  );
  t.same(container.command, ["/usr/local/bin/digest-migrations-reconciler"]);
  t.ok(container.args.includes("--leader-election-namespace=$(POD_NAMESPACE)"), "Lease in its own namespace");
  t.notOk(container.args.includes("--no-leader-election"), "leader election on");
  const ports = Object.fromEntries(container.ports.map((p) => [p.name, p.containerPort]));
  t.same(ports, { waiter: WAITER_API_PORT, metrics: 8080 });
  t.ok(container.args.includes(`--waiter-port=${WAITER_API_PORT}`) && container.args.includes("--metrics-port=8080"));
  for (const [key, value] of Object.entries(spec.selector.matchLabels))
    t.equal(spec.template.metadata.labels[key], value, `pod template carries selector label ${key}`);

  const pdb = find("PodDisruptionBudget")["spec"] as { maxUnavailable: number; selector: unknown };
  t.equal(pdb.maxUnavailable, 1);
  t.same(pdb.selector, spec.selector, "PDB selects the reconciler's pods");
  t.end();
});

t.test("the Service exposes the waiter and metrics ports by name", (t) => {
  const service = find("Service");
  t.equal(service.metadata.name, "digest-migrations", "the name waiters are configured with");
  const spec = service["spec"] as {
    selector: Record<string, string>;
    ports: { name: string; port: number; targetPort: string }[];
  };
  t.same(
    spec.ports.map((p) => [p.name, p.port, p.targetPort]),
    [
      ["waiter", WAITER_API_PORT, "waiter"],
      ["metrics", 8080, "metrics"],
    ],
  );
  t.same(spec.selector, { "app.kubernetes.io/name": "digest-migrations-reconciler" });
  t.end();
});

t.test("the kustomization includes every manifest and sets the namespace", (t) => {
  const [k] = load("kustomization.yaml") as unknown as { namespace: string; resources: string[] }[];
  t.equal(k?.namespace, "digest-migrations-system");
  t.same([...(k?.resources ?? [])].sort(), files.filter((f) => f !== "kustomization.yaml").sort());
  t.end();
});

t.test("the image provides both entrypoints, as a non-root user", (t) => {
  const dockerfile = readFileSync(fileURLToPath(new URL("../../Dockerfile.reconciler", import.meta.url)), "utf8");
  t.match(
    dockerfile,
    new RegExp(`exec node (--\\S+ )*/app/waiter\\.mjs "\\$@"\\\\n' > /usr/local/bin/${WAITER_COMMAND}\\b`),
  );
  t.match(dockerfile, /exec node \/app\/reconciler\.mjs "\$@"\\n' > \/usr\/local\/bin\/digest-migrations-reconciler\b/);
  const stages = dockerfile.split(/^FROM /m);
  t.match(stages.at(-1), /^USER 65532:65532$/m, "the runtime stage runs as 65532");
  t.notMatch(stages.at(-1), /COPY --from=build \/src\/node_modules/, "no node_modules in the runtime image");
  t.end();
});
