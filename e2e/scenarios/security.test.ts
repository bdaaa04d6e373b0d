// The reconciler's shipped RBAC (reconciler/deploy/rbac.yaml) is least privilege, proven on the real API
// server with the reconciler's own ServiceAccount token:
// 1. what it must never do is refused (403): read Secrets or ConfigMaps, change workloads, change a
//    Migrator's spec, delete Migrators or namespaces, grant itself more (RBAC objects, tokens), exec into
//    or read logs of pods;
// 2. its effective permissions, asked of the API server's authorizer verb by verb (SubjectAccessReview)
//    over every resource it could plausibly want, are exactly the list below: widening the ClusterRole
//    fails this test until the list (and docs/security.md) says why.
import t from "tap";
import { ApiError, KubeClient, paths } from "../kit/client.ts";
import { sharedCluster } from "../harness/env.ts";
import { namespaceFor } from "../harness/env.ts";
import { installReconciler, RECONCILER_NAMESPACE } from "../pipeline/install.ts";
import { table } from "./report.ts";

const cluster = await sharedCluster();
const admin = KubeClient.fromFile(cluster.adminKubeconfig);
const installation = await installReconciler(cluster);
const reconciler = KubeClient.fromFile(installation.kubeconfig);
const namespace = namespaceFor("security");
await cluster.ensureNamespace(namespace);
t.teardown(() => admin.delete(paths.namespace(namespace)).catch(() => undefined));

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
    "/apis/rbac.authorization.k8s.io/v1/clusterroles/digest-migrations-reconciler",
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
  // And it can do its job: the same client lists pods and reads Migrators.
  t.equal(await statusOf("GET", `${ns}/pods`), 200, "lists pods");
  t.equal(await statusOf("GET", `/apis/migrations.coderanger.net/v1beta1/namespaces/${namespace}/migrators`), 200);
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

t.test("its effective permissions are exactly what it needs (SubjectAccessReview)", async (t) => {
  const user = `system:serviceaccount:${RECONCILER_NAMESPACE}:${installation.serviceAccount}`;
  const groups = ["system:serviceaccounts", `system:serviceaccounts:${RECONCILER_NAMESPACE}`, "system:authenticated"];
  const granted: Record<string, string[]> = {};
  for (const key of RESOURCES) {
    const [group = "", resource = "", subresource] = key.split("/");
    for (const verb of VERBS) {
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
              resourceAttributes: { namespace, verb, group, resource, ...(subresource ? { subresource } : {}) },
            },
          },
        },
      );
      if (review.status.allowed) (granted[key] ??= []).push(verb);
    }
  }
  for (const verbs of Object.values(granted)) verbs.sort();
  const expected = Object.fromEntries(Object.entries(NEEDED).map(([k, v]) => [k, [...v].sort()]));
  t.same(granted, expected, `${RESOURCES.length} resources × ${VERBS.length} verbs: granted = needed`);
  table(
    t,
    "effective permissions in an application namespace",
    ["resource", "verbs"],
    Object.entries(granted).map(([k, v]) => [k, v.join(",")]),
  );
});
