// The reconciler's RBAC as the Helm chart installs it is least privilege, proven on the real API server
// with the tokens of the ServiceAccounts its pods run as, while the chart-installed reconcilers run on
// the real node. Two installs:
// - cluster-wide (watchNamespaces empty: the ClusterRole of reconciler/deploy/rbac.yaml), in its own
//   namespace; its process is told to watch that namespace only (extraArgs), so it never acts on the other
//   tests' Migrators;
// - namespace-scoped (watchNamespaces set: a Role per watched namespace, the deploy/namespaced overlay's
//   rules), in `<app namespace>-dm`, watching the application's namespace.
// 1. what it must never do is refused (403): read Secrets or ConfigMaps, change workloads, change a
//    Migrator's spec, delete Migrators or namespaces, grant itself more (RBAC objects, tokens), exec into
//    or read logs of pods — and, namespace-scoped, anything at all outside its namespaces;
// 2. its effective permissions, asked of the API server's authorizer verb by verb (SubjectAccessReview)
//    over every resource it could plausibly want, are exactly the list below, plus its own Lease in its
//    release namespace: widening a rule fails this test until the list (and docs/security.md) says why;
// 3. the namespace-scoped install still does its job: a migration in the watched namespace runs once and
//    releases the app.
import t from "tap";
import type { Test } from "tap";
import { ApiError, KubeClient } from "../kit/client.ts";
import { waitFor } from "../kit/wait.ts";
import { deleteNamespace } from "../world/namespace.ts";
import { ReconcilerRelease } from "../world/reconciler-release.ts";
import { appDeployment, appImage, reconcilerEnv, runningImages, unmigratedStarts } from "../reconciler/setup.ts";
import { table } from "./report.ts";

// The application's namespace (the test's), watched by the namespace-scoped install in `<namespace>-dm`.
const env = await reconcilerEnv(t, { ownReleaseNamespace: true });
const namespace = env.namespace;
const scoped = env.release;
const admin = env.kube;

// The cluster-wide install, and a namespace nobody watches.
const clusterWideNamespace = `${namespace}-cw`;
const elsewhere = `${namespace}-other`;
for (const ns of [clusterWideNamespace, elsewhere]) {
  await env.cluster.ensureNamespace(ns);
  t.teardown(() => deleteNamespace(admin, ns));
}
const clusterWide = await ReconcilerRelease.install(env.world, admin, clusterWideNamespace, {
  replicas: 1,
  values: { watchNamespaces: [] },
  extraArgs: [`--namespace=${clusterWideNamespace}`],
});

for (const ns of [namespace, elsewhere]) {
  await admin.createObject({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "db", namespace: ns },
    stringData: { DATABASE_URL: "postgres://app:secret@db/app" },
  });
  await admin.createObject({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "app", namespace: ns }, data: {} });
}

/** An install's ServiceAccount: its API client (its own token) and its identity for SubjectAccessReviews. */
interface Subject {
  release: ReconcilerRelease;
  client: KubeClient;
  user: string;
  groups: string[];
}
async function subject(release: ReconcilerRelease): Promise<Subject> {
  const serviceAccount = `${release.fullname}-reconciler`;
  return {
    release,
    client: KubeClient.fromFile(await env.cluster.kubeconfigFor(release.namespace, serviceAccount)),
    user: `system:serviceaccount:${release.namespace}:${serviceAccount}`,
    groups: ["system:serviceaccounts", `system:serviceaccounts:${release.namespace}`, "system:authenticated"],
  };
}
const wide = await subject(clusterWide);
const narrow = await subject(scoped);

/** The HTTP status of one request as `who` (2xx as 200). */
async function statusOf(who: Subject, method: string, path: string, body?: unknown): Promise<number> {
  try {
    await who.client.request(
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

type Attempt = [what: string, method: string, path: string, body?: unknown];

/** Refused even to the cluster-wide install, in the namespace of an application it serves. */
function neverAllowed(ns: string): Attempt[] {
  const core = `/api/v1/namespaces/${ns}`;
  const migrators = `/apis/migrations.coderanger.net/v1beta1/namespaces/${ns}/migrators`;
  return [
    ["read a Secret", "GET", `${core}/secrets/db`],
    ["list Secrets in the namespace", "GET", `${core}/secrets`],
    ["list Secrets cluster-wide", "GET", "/api/v1/secrets"],
    ["watch Secrets cluster-wide", "GET", "/api/v1/secrets?watch=true"],
    ["read a ConfigMap", "GET", `${core}/configmaps/app`],
    ["list ServiceAccounts", "GET", `${core}/serviceaccounts`],
    ["create a ServiceAccount token", "POST", `${core}/serviceaccounts/default/token`, { spec: {} }],
    ["delete the namespace", "DELETE", `/api/v1/namespaces/${ns}`],
    ["patch a node", "PATCH", "/api/v1/nodes/any", { metadata: { labels: { x: "y" } } }],
    ["exec into a pod", "POST", `${core}/pods/any/exec?command=sh`],
    ["read a pod's logs", "GET", `${core}/pods/any/log`],
    ["get a Deployment (list/watch only)", "GET", `/apis/apps/v1/namespaces/${ns}/deployments/any`],
    ["patch a Deployment", "PATCH", `/apis/apps/v1/namespaces/${ns}/deployments/any`, { spec: {} }],
    ["create a Deployment", "POST", `/apis/apps/v1/namespaces/${ns}/deployments`, { metadata: { name: "x" } }],
    ["patch a Migrator's spec", "PATCH", `${migrators}/any`, { spec: {} }],
    ["delete a Migrator", "DELETE", `${migrators}/any`],
    [
      "create a RoleBinding",
      "POST",
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`,
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
      `/apis/rbac.authorization.k8s.io/v1/clusterroles/${clusterWide.fullname}-reconciler`,
      { rules: [] },
    ],
    [
      "delete a CustomResourceDefinition",
      "DELETE",
      "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/migrators.migrations.coderanger.net",
    ],
  ];
}

/** What the namespace-scoped install may do in its namespace, refused anywhere else. */
function outsideItsNamespaces(ns: string): Attempt[] {
  const core = `/api/v1/namespaces/${ns}`;
  const migrators = `/apis/migrations.coderanger.net/v1beta1/namespaces/${ns}/migrators`;
  const pod = { metadata: { name: "x" }, spec: { containers: [{ name: "x", image: "x" }] } };
  return [
    ["list pods in another namespace", "GET", `${core}/pods`],
    ["watch pods in another namespace", "GET", `${core}/pods?watch=true`],
    ["create a pod in another namespace", "POST", `${core}/pods`, pod],
    ["patch a pod in another namespace", "PATCH", `${core}/pods/any`, { metadata: { labels: { x: "y" } } }],
    ["delete a pod in another namespace", "DELETE", `${core}/pods/any`],
    ["list pods cluster-wide", "GET", "/api/v1/pods"],
    ["list Jobs in another namespace", "GET", `/apis/batch/v1/namespaces/${ns}/jobs`],
    ["create a Job in another namespace", "POST", `/apis/batch/v1/namespaces/${ns}/jobs`, { metadata: { name: "x" } }],
    ["delete a Job in another namespace", "DELETE", `/apis/batch/v1/namespaces/${ns}/jobs/any`],
    ["list Jobs cluster-wide", "GET", "/apis/batch/v1/jobs"],
    ["list Migrators in another namespace", "GET", migrators],
    ["patch a Migrator's status in another namespace", "PATCH", `${migrators}/any/status`, { status: {} }],
    ["list Migrators cluster-wide", "GET", "/apis/migrations.coderanger.net/v1beta1/migrators"],
    ["list Deployments cluster-wide", "GET", "/apis/apps/v1/deployments"],
    ["create an Event in another namespace", "POST", `${core}/events`, { metadata: { name: "x" } }],
    ["list nodes", "GET", "/api/v1/nodes"],
    ["create a TokenReview (waiterAuth is off)", "POST", "/apis/authentication.k8s.io/v1/tokenreviews", { spec: {} }],
  ];
}

async function refused(t: Test, who: Subject, title: string, attempts: Attempt[], ns: string): Promise<void> {
  const rows: string[][] = [];
  for (const [what, method, path, body] of attempts) {
    const status = await statusOf(who, method, path, body);
    t.equal(status, 403, `${what}: ${method} ${path}`);
    rows.push([what, `${method} ${path.replace(ns, "<ns>")}`, String(status)]);
  }
  table(t, title, ["attempt", "request", "status"], rows);
}

t.test("what the reconciler must never do is refused by the API server", async (t) => {
  await refused(t, wide, "refused requests (cluster-wide install)", neverAllowed(namespace), namespace);
  await refused(t, narrow, "refused requests (namespace-scoped install)", neverAllowed(namespace), namespace);
  await refused(
    t,
    narrow,
    "refused outside its namespaces (namespace-scoped install)",
    outsideItsNamespaces(elsewhere),
    elsewhere,
  );
  // And each can do its job: lists pods and reads Migrators where it serves; the running replicas synced
  // their caches (Ready) and hold their Leases with these permissions.
  const core = `/api/v1/namespaces/${namespace}`;
  const migrators = `/apis/migrations.coderanger.net/v1beta1/namespaces/${namespace}/migrators`;
  for (const who of [wide, narrow]) {
    t.equal(await statusOf(who, "GET", `${core}/pods`), 200, `${who.release.namespace}: lists pods`);
    t.equal(await statusOf(who, "GET", migrators), 200, `${who.release.namespace}: lists Migrators`);
    const leader = await waitFor(() => who.release.leader(), {
      what: `a holder of the Lease in ${who.release.namespace}`,
    });
    t.match(leader, /./, `${who.release.namespace}: the chart-installed reconciler holds its Lease`);
    t.same(await who.release.restarts(), [], `${who.release.namespace}: and never crashed`);
  }
});

// Every permission the reconciler needs in a namespace it serves, and why (group/resource: verbs).
const IN_NAMESPACE: Record<string, string[]> = {
  "migrations.coderanger.net/migrators": ["get", "list", "watch"], // its cache; get for a fresh read
  "migrations.coderanger.net/migrators/status": ["patch", "update"], // status is all it writes
  "migrations.coderanger.net/migrators/finalizers": ["update"], // ownerReferences with blockOwnerDeletion
  "/pods": ["create", "delete", "get", "list", "patch", "watch"], // probes (create/delete), pinning (patch)
  "batch/jobs": ["create", "delete", "get", "list", "watch"], // one migration Job per digest; stale ones removed
  "apps/replicasets": ["list", "watch"], // owner chain of selected pods
  "apps/deployments": ["list", "watch"],
  "apps/statefulsets": ["list", "watch"],
  "apps/daemonsets": ["list", "watch"],
  "batch/cronjobs": ["list", "watch"],
  "argoproj.io/rollouts": ["list", "watch"],
  "/events": ["create", "patch"], // events on Migrators
};
// Cluster-wide only: status.nodeInfo.containerRuntimeVersion explains a probe CRI-O cannot answer.
const NODES: Record<string, string[]> = { "/nodes": ["list", "watch"] };
const LEASE_CREATE: Record<string, string[]> = { "coordination.k8s.io/leases": ["create"] };

const VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];
const RESOURCES = [
  ...Object.keys(IN_NAMESPACE),
  ...Object.keys(NODES),
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
  "authentication.k8s.io/tokenreviews",
  "admissionregistration.k8s.io/mutatingwebhookconfigurations",
];

/** Whether the API server's authorizer allows `who` `verb` on `key` (group/resource[/sub]) in `ns` ("" = cluster). */
async function allowed(who: Subject, ns: string, key: string, verb: string, name?: string): Promise<boolean> {
  const [group = "", resource = "", subresource] = key.split("/");
  const review = await admin.request<{ status: { allowed: boolean } }>(
    "POST",
    "/apis/authorization.k8s.io/v1/subjectaccessreviews",
    {
      body: {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SubjectAccessReview",
        spec: {
          user: who.user,
          groups: who.groups,
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

/** Every (resource, verb) of RESOURCES × VERBS `who` is granted in `ns`, verbs sorted. */
async function granted(who: Subject, ns: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const key of RESOURCES) {
    for (const verb of VERBS) if (await allowed(who, ns, key, verb)) (out[key] ??= []).push(verb);
  }
  for (const verbs of Object.values(out)) verbs.sort();
  return out;
}

const sorted = (...perms: Record<string, string[]>[]): Record<string, string[]> =>
  Object.fromEntries(
    Object.entries(Object.assign({}, ...perms) as Record<string, string[]>).map(([k, v]) => [k, [...v].sort()]),
  );

/** Its own Lease, by name, in its release namespace only. */
async function ownLeaseOnly(t: Test, who: Subject): Promise<void> {
  const lease = `${who.release.fullname}-reconciler`;
  const home = who.release.namespace;
  for (const verb of ["get", "update"]) {
    t.ok(await allowed(who, home, "coordination.k8s.io/leases", verb, lease), `${verb} its own Lease ${lease}`);
    t.notOk(await allowed(who, home, "coordination.k8s.io/leases", verb, "someone-else"), `${verb} another Lease: no`);
    t.notOk(
      await allowed(who, namespace, "coordination.k8s.io/leases", verb, lease),
      `${verb} a Lease of that name elsewhere: no`,
    );
  }
}

const SAR = `${RESOURCES.length} resources × ${VERBS.length} verbs`;

t.test("cluster-wide install: its effective permissions are exactly what it needs (SubjectAccessReview)", async (t) => {
  const inApp = await granted(wide, namespace);
  t.same(inApp, sorted(IN_NAMESPACE, NODES), `${SAR} in an application namespace: granted = needed`);
  table(
    t,
    "effective permissions in an application namespace (cluster-wide install)",
    ["resource", "verbs"],
    Object.entries(inApp).map(([k, v]) => [k, v.join(",")]),
  );
  // In its release namespace, the leader election too: any Lease may be created (its name is not
  // known before it exists), only its own read and renewed.
  t.same(
    await granted(wide, clusterWideNamespace),
    sorted(IN_NAMESPACE, NODES, LEASE_CREATE),
    "in the release namespace: the same, and creating a Lease",
  );
  await ownLeaseOnly(t, wide);
});

t.test("namespace-scoped install: its namespaces only, nothing cluster-wide (SubjectAccessReview)", async (t) => {
  const inApp = await granted(narrow, namespace);
  t.same(inApp, sorted(IN_NAMESPACE), `${SAR} in the watched namespace: granted = needed, no nodes`);
  table(
    t,
    "effective permissions in the watched namespace (namespace-scoped install)",
    ["resource", "verbs"],
    Object.entries(inApp).map(([k, v]) => [k, v.join(",")]),
  );
  t.same(await granted(narrow, scoped.namespace), sorted(LEASE_CREATE), "in its release namespace: its Lease only");
  t.same(await granted(narrow, elsewhere), {}, `in a namespace it does not watch: nothing of ${SAR}`);
  t.same(await granted(narrow, ""), {}, `cluster-wide (all namespaces, cluster-scoped resources): nothing`);
  await ownLeaseOnly(t, narrow);
});

t.test("namespace-scoped install: a migration in the watched namespace runs once and releases", async (t) => {
  const digest = await env.push(appImage("v1"));
  await env.migrator("db", { selector: { matchLabels: { app: "web" } }, command: ["migrate"] });
  await env.kube.createObject(appDeployment(env, "web", { migrator: "db" }));
  const migrated = await env.waitReady("db", digest);
  t.same(
    migrated.status?.migratedDigests?.map((r) => r.digest),
    [digest],
    "the digest is recorded by the reconciler in <namespace>-dm",
  );
  t.equal((await env.jobs()).length, 1, "one Job");
  t.same(
    (await env.applied()).map((r) => [r.version, r.digest]),
    [["v1", digest]],
    "one migration run",
  );
  const running = await waitFor(
    async () => {
      const images = runningImages(await env.pods("app=web"));
      return images.length === 1 ? images : undefined;
    },
    { what: "the app container running" },
  );
  t.match(running[0], digest, "the app runs the migrated digest");
  t.same(await unmigratedStarts(env, "web-", [digest]), [], "containerd never started an unmigrated app");
  t.same(await clusterWide.restarts(), [], "the cluster-wide install never crashed either");
});
