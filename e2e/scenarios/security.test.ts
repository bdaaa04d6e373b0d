// The reconciler's RBAC as the Helm chart installs it (charts/digest-migrations, the same rules as
// reconciler/deploy/rbac.yaml) is least privilege, proven on the real API server with the token of
// the ServiceAccount its pods run as, while the chart-installed reconciler runs on the real node:
// 1. what it must never do is refused (403): read Secrets or ConfigMaps, change workloads, change a
//    Migrator's spec, delete Migrators or namespaces, grant itself more (RBAC objects, tokens), exec into
//    or read logs of pods;
// 2. its effective permissions, asked of the API server's authorizer verb by verb (SubjectAccessReview)
//    over every resource it could plausibly want, are exactly the list below in an application's
//    namespace, plus its own Lease in its release namespace: widening the ClusterRole fails this test
//    until the list (and docs/security.md) says why.
import t from "tap";
import { ApiError, KubeClient, paths } from "../kit/client.ts";
import { errorText, waitFor } from "../kit/wait.ts";
import { nodeEnv } from "../world/env.ts";
import { ReconcilerRelease } from "../world/reconciler-release.ts";
import { table } from "./report.ts";

const env = await nodeEnv(t, { postgres: false });
// One replica: it runs, holds its Lease and serves under exactly these permissions.
const release = await ReconcilerRelease.install(env.world, env.kube, env.namespace, { replicas: 1 });
const serviceAccount = `${release.fullname}-reconciler`;
const releaseNamespace = env.namespace;
const reconciler = KubeClient.fromFile(await env.cluster.kubeconfigFor(releaseNamespace, serviceAccount));
const admin = env.kube;
// An application's namespace, where its Secrets and ConfigMaps live.
const namespace = `${env.namespace}-app`;
await env.cluster.ensureNamespace(namespace);
t.teardown(async () => {
  try {
    await admin.delete(paths.namespace(namespace));
  } catch (err) {
    t.fail(`teardown of namespace ${namespace}: ${errorText(err)}`);
  }
});

await admin.createObject({
  apiVersion: "v1",
  kind: "Secret",
  metadata: { name: "db", namespace },
  stringData: { DATABASE_URL: "postgres://app:secret@db/app" },
});
await admin.createObject({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "app", namespace }, data: {} });

/** The HTTP status of one request as the reconciler (2xx as 200). */
async function statusOf(method: string, path: string, body?: unknown): Promise<number> {
  try {
    await reconciler.request(
      method,
      path,
      body === undefined ? {} : { body, contentType: "application/merge-patch+json" },
    );
    return 200;
  } catch (error) {
    if (error instanceof ApiError) return error.status;
    throw error;
  }
}

const ns = `/api/v1/namespaces/${namespace}`;
const forbidden: [string, string, string, unknown?][] = [
  ["read a Secret", "GET", `${ns}/secrets/db`],
  ["list Secrets in the namespace", "GET", `${ns}/secrets`],
  ["list Secrets cluster-wide", "GET", "/api/v1/secrets"],
  ["watch Secrets cluster-wide", "GET", "/api/v1/secrets?watch=true"],
  ["read a ConfigMap", "GET", `${ns}/configmaps/app`],
  ["list ServiceAccounts", "GET", `${ns}/serviceaccounts`],
  ["create a ServiceAccount token", "POST", `${ns}/serviceaccounts/default/token`, { spec: {} }],
  ["delete the namespace", "DELETE", `/api/v1/namespaces/${namespace}`],
  ["patch a node", "PATCH", "/api/v1/nodes/any", { metadata: { labels: { x: "y" } } }],
  ["exec into a pod", "POST", `${ns}/pods/any/exec?command=sh`],
  ["read a pod's logs", "GET", `${ns}/pods/any/log`],
  ["get a Deployment (list/watch only)", "GET", `/apis/apps/v1/namespaces/${namespace}/deployments/any`],
  ["patch a Deployment", "PATCH", `/apis/apps/v1/namespaces/${namespace}/deployments/any`, { spec: {} }],
  ["create a Deployment", "POST", `/apis/apps/v1/namespaces/${namespace}/deployments`, { metadata: { name: "x" } }],
  [
    "patch a Migrator's spec",
    "PATCH",
    `/apis/migrations.coderanger.net/v1beta1/namespaces/${namespace}/migrators/any`,
    { spec: {} },
  ],
  ["delete a Migrator", "DELETE", `/apis/migrations.coderanger.net/v1beta1/namespaces/${namespace}/migrators/any`],
  [
    "create a RoleBinding",
    "POST",
    `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/rolebindings`,
    { metadata: { name: "x" } },
  ],
  [
    "create a ClusterRoleBinding",
    "POST",
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    { metadata: { name: "x" } },
  ],
  [
    "patch its own ClusterRole",
    "PATCH",
    `/apis/rbac.authorization.k8s.io/v1/clusterroles/${serviceAccount}`,
    { rules: [] },
  ],
  [
    "delete a CustomResourceDefinition",
    "DELETE",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/migrators.migrations.coderanger.net",
  ],
];

t.test("what the reconciler must never do is refused by the API server", async (t) => {
  const rows: string[][] = [];
  for (const [what, method, path, body] of forbidden) {
    const status = await statusOf(method, path, body);
    t.equal(status, 403, `${what}: ${method} ${path}`);
    rows.push([what, `${method} ${path.replace(namespace, "<ns>")}`, String(status)]);
  }
  table(t, "refused requests (the reconciler's ServiceAccount token)", ["attempt", "request", "status"], rows);
  // And it can do its job: the same client lists pods and reads Migrators; the running replica
  // synced its caches (Ready) and holds its Lease with these permissions.
  t.equal(await statusOf("GET", `${ns}/pods`), 200, "lists pods");
  t.equal(await statusOf("GET", `/apis/migrations.coderanger.net/v1beta1/namespaces/${namespace}/migrators`), 200);
  const leader = await waitFor(() => release.leader(), { what: `a holder of the Lease in ${releaseNamespace}` });
  t.match(leader, /./, "the chart-installed reconciler holds its Lease");
  t.same(await release.restarts(), [], "and never crashed");
});

// Every permission the reconciler needs, and why (group/resource: verbs). Nothing else may be granted.
const NEEDED: Record<string, string[]> = {
  "migrations.coderanger.net/migrators": ["get", "list", "watch"], // its cache; get for a fresh read
  "migrations.coderanger.net/migrators/status": ["patch", "update"], // status is all it writes
  "migrations.coderanger.net/migrators/finalizers": ["update"], // ownerReferences with blockOwnerDeletion
  "/pods": ["create", "delete", "get", "list", "patch", "watch"], // probes (create/delete), pinning (patch)
  "batch/jobs": ["create", "delete", "get", "list", "watch"], // one migration Job per digest; stale ones removed
  "/nodes": ["list", "watch"], // status.nodeInfo.containerRuntimeVersion explains a probe CRI-O cannot answer
  "apps/replicasets": ["list", "watch"], // owner chain of selected pods
  "apps/deployments": ["list", "watch"],
  "apps/statefulsets": ["list", "watch"],
  "apps/daemonsets": ["list", "watch"],
  "batch/cronjobs": ["list", "watch"],
  "argoproj.io/rollouts": ["list", "watch"],
  "/events": ["create", "patch"], // events on Migrators
};

const VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];
const RESOURCES = [
  ...Object.keys(NEEDED),
  "/secrets",
  "/configmaps",
  "/services",
  "/serviceaccounts",
  "/serviceaccounts/token",
  "/pods/exec",
  "/pods/log",
  "/pods/eviction",
  "/pods/status",
  "/namespaces",
  "/persistentvolumeclaims",
  "apps/deployments/scale",
  "batch/jobs/status",
  "rbac.authorization.k8s.io/roles",
  "rbac.authorization.k8s.io/rolebindings",
  "rbac.authorization.k8s.io/clusterroles",
  "rbac.authorization.k8s.io/clusterrolebindings",
  "apiextensions.k8s.io/customresourcedefinitions",
  "coordination.k8s.io/leases",
  "admissionregistration.k8s.io/mutatingwebhookconfigurations",
];

const user = `system:serviceaccount:${releaseNamespace}:${serviceAccount}`;
const groups = ["system:serviceaccounts", `system:serviceaccounts:${releaseNamespace}`, "system:authenticated"];

/** Whether the API server's authorizer allows the reconciler `verb` on `key` (group/resource[/sub]) in `ns`. */
async function allowed(ns: string, key: string, verb: string, name?: string): Promise<boolean> {
  const [group = "", resource = "", subresource] = key.split("/");
  const review = await admin.request<{ status: { allowed: boolean } }>(
    "POST",
    "/apis/authorization.k8s.io/v1/subjectaccessreviews",
    {
      body: {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SubjectAccessReview",
        spec: {
          user,
          groups,
          resourceAttributes: {
            namespace: ns,
            verb,
            group,
            resource,
            ...(subresource ? { subresource } : {}),
            ...(name ? { name } : {}),
          },
        },
      },
    },
  );
  return review.status.allowed;
}

/** Every (resource, verb) of RESOURCES × VERBS the reconciler is granted in `ns`, verbs sorted. */
async function granted(ns: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const key of RESOURCES) {
    for (const verb of VERBS) if (await allowed(ns, key, verb)) (out[key] ??= []).push(verb);
  }
  for (const verbs of Object.values(out)) verbs.sort();
  return out;
}

const sorted = (perms: Record<string, string[]>): Record<string, string[]> =>
  Object.fromEntries(Object.entries(perms).map(([k, v]) => [k, [...v].sort()]));

t.test("its effective permissions are exactly what it needs (SubjectAccessReview)", async (t) => {
  const inApp = await granted(namespace);
  t.same(inApp, sorted(NEEDED), `${RESOURCES.length} resources × ${VERBS.length} verbs: granted = needed`);
  table(
    t,
    "effective permissions in an application namespace",
    ["resource", "verbs"],
    Object.entries(inApp).map(([k, v]) => [k, v.join(",")]),
  );
  // In its release namespace, the leader election too: any Lease may be created (its name is not
  // known before it exists), only its own read and renewed.
  t.same(
    await granted(releaseNamespace),
    sorted({ ...NEEDED, "coordination.k8s.io/leases": ["create"] }),
    "in the release namespace: the same, and creating a Lease",
  );
  const lease = `${release.fullname}-reconciler`;
  for (const verb of ["get", "update"]) {
    t.ok(await allowed(releaseNamespace, "coordination.k8s.io/leases", verb, lease), `${verb} its own Lease ${lease}`);
    t.notOk(
      await allowed(releaseNamespace, "coordination.k8s.io/leases", verb, "someone-else"),
      `${verb} another Lease: no`,
    );
    t.notOk(
      await allowed(namespace, "coordination.k8s.io/leases", verb, lease),
      `${verb} a Lease of that name elsewhere: no`,
    );
  }
});
