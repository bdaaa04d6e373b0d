// Self-check of the control plane: node e2e/cluster/smoke.ts
// Starts the cluster (building the binaries first on a fresh machine), then checks that the
// real controllers work: Deployment → ReplicaSet → 2 Pods, a Job completing from a pod status
// write, RBAC denying an unprivileged ServiceAccount, garbage collection, an apiserver restart
// keeping its data, and that stop() leaves nothing behind. Exit code 0 on success.
import fs from "node:fs";
import https from "node:https";
import { startCluster } from "./cluster.ts";
import type { Cluster } from "./cluster.ts";

const t0 = Date.now();
const secs = (since: number) => ((Date.now() - since) / 1000).toFixed(1);
const step = (what: string) => console.log(`[smoke +${secs(t0)}s] ${what}`);

function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface Meta {
  name: string;
  uid: string;
  ownerReferences?: { kind: string; name: string; uid: string }[];
  labels?: Record<string, string>;
}
interface List<T> {
  items: T[];
}
interface Pod {
  metadata: Meta;
  spec: { nodeName?: string; serviceAccountName?: string; containers: { name: string; image: string }[] };
}

const ns = "smoke";
const q = encodeURIComponent;

async function ok<T>(c: Cluster, method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
  const r = await c.request<T>(method, path, body, contentType);
  if (r.status < 200 || r.status > 299)
    throw new Error(`${method} ${path}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** GET with a bearer token from a kubeconfig written by kubeconfigFor(). */
function getAs(kubeconfig: string, c: Cluster, path: string): Promise<number> {
  const token = /token: "([^"]+)"/.exec(fs.readFileSync(kubeconfig, "utf8"))?.[1];
  check(token, `token in ${kubeconfig}`);
  return new Promise((resolve, reject) => {
    https
      .get(
        `${c.server}${path}`,
        { ca: fs.readFileSync(c.caFile), headers: { authorization: `Bearer ${token}` } },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        },
      )
      .on("error", reject);
  });
}

async function main(): Promise<void> {
  const cluster = await startCluster({ log: (l) => console.log(l) });
  const startup = secs(t0);
  try {
    const c = cluster;
    step(`cluster up in ${startup}s: ${c.server}, admin kubeconfig ${c.adminKubeconfig}`);
    const version = await ok<{ gitVersion: string }>(c, "GET", "/version");
    step(`server version ${version.gitVersion}`);

    await c.ensureNamespace(ns);
    step(`namespace ${ns} ready (default ServiceAccount has a token)`);

    // --- Deployment → ReplicaSet → 2 Pods (ReplicaSet controller + ServiceAccount admission)
    const labels = { app: "smoke" };
    await ok(c, "POST", `/apis/apps/v1/namespaces/${ns}/deployments`, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "app", labels },
      spec: {
        replicas: 2,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: { containers: [{ name: "app", image: "registry.example/app:latest" }] },
        },
      },
    });
    const pods = await eventually("2 pods of the Deployment", async () => {
      const l = await ok<List<Pod>>(c, "GET", `/api/v1/namespaces/${ns}/pods?labelSelector=${q("app=smoke")}`);
      return l.items.length === 2 ? l.items : undefined;
    });
    const rs = pods[0]?.metadata.ownerReferences?.[0];
    check(rs?.kind === "ReplicaSet", "pods owned by a ReplicaSet");
    check(pods[0]?.spec.serviceAccountName === "default", "ServiceAccount admission defaulted serviceAccountName");
    step(`Deployment created ReplicaSet ${rs.name} with pods ${pods.map((p) => p.metadata.name).join(", ")}`);

    // --- Job → Pod; the harness plays the node: bind the pod, report it Succeeded → Job complete
    await ok(c, "POST", "/api/v1/nodes", { apiVersion: "v1", kind: "Node", metadata: { name: "smoke-node" } });
    await ok(c, "POST", `/apis/batch/v1/namespaces/${ns}/jobs`, {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: { name: "migrate" },
      spec: {
        backoffLimit: 0,
        template: {
          spec: {
            restartPolicy: "Never",
            containers: [{ name: "m", image: "registry.example/app@sha256:" + "0".repeat(64) }],
          },
        },
      },
    });
    const jobPod = await eventually("the Job's pod", async () => {
      const l = await ok<List<Pod>>(c, "GET", `/api/v1/namespaces/${ns}/pods?labelSelector=${q("job-name=migrate")}`);
      return l.items[0];
    });
    const pp = `/api/v1/namespaces/${ns}/pods/${q(jobPod.metadata.name)}`;
    await ok(c, "POST", `${pp}/binding`, {
      apiVersion: "v1",
      kind: "Binding",
      metadata: { name: jobPod.metadata.name },
      target: { apiVersion: "v1", kind: "Node", name: "smoke-node" },
    });
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    await ok(
      c,
      "PATCH",
      `${pp}/status`,
      {
        status: {
          phase: "Succeeded",
          containerStatuses: [
            {
              name: "m",
              image: jobPod.spec.containers[0]?.image,
              imageID: `docker-pullable://${jobPod.spec.containers[0]?.image}`,
              ready: false,
              restartCount: 0,
              state: { terminated: { exitCode: 0, reason: "Completed", startedAt: now, finishedAt: now } },
            },
          ],
        },
      },
      "application/merge-patch+json",
    );
    await eventually("Job succeeded", async () => {
      const j = await ok<{ status?: { succeeded?: number; completionTime?: string } }>(
        c,
        "GET",
        `/apis/batch/v1/namespaces/${ns}/jobs/migrate`,
      );
      return j.status?.succeeded === 1 && j.status.completionTime ? true : undefined;
    });
    step("Job created its pod and completed after the pod status write");

    // --- RBAC: an SA without a Role cannot list secrets; with one it can
    const kc = await c.kubeconfigFor(ns, "nobody");
    const denied = await getAs(kc, c, `/api/v1/namespaces/${ns}/secrets`);
    check(denied === 403, `SA without a Role gets 403 listing secrets (got ${denied})`);
    await ok(c, "POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: "secret-reader" },
      rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["list"] }],
    });
    await ok(c, "POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "nobody-reads-secrets" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "secret-reader" },
      subjects: [{ kind: "ServiceAccount", name: "nobody", namespace: ns }],
    });
    await eventually("SA with a Role can list secrets", async () =>
      (await getAs(kc, c, `/api/v1/namespaces/${ns}/secrets`)) === 200 ? true : undefined,
    );
    step(`RBAC: ${kc} denied (403) without a Role, allowed with one`);

    // --- garbage collector: deleting the Deployment removes its ReplicaSet and pods
    await ok(c, "DELETE", `/apis/apps/v1/namespaces/${ns}/deployments/app`, {
      kind: "DeleteOptions",
      apiVersion: "v1",
      propagationPolicy: "Background",
    });
    await eventually("GC removed the ReplicaSet and its pods", async () => {
      const l = await ok<List<Pod>>(c, "GET", `/api/v1/namespaces/${ns}/pods?labelSelector=${q("app=smoke")}`);
      const r = await ok<List<unknown>>(c, "GET", `/apis/apps/v1/namespaces/${ns}/replicasets`);
      return l.items.length === 0 && r.items.length === 0 ? true : undefined;
    });
    step("garbage collector removed the ReplicaSet and its pods");

    // --- apiserver restart keeps the data (etcd stays up)
    let t = Date.now();
    await c.stopApiserver();
    const down = await c.request("GET", "/readyz").then(
      (r) => `HTTP ${r.status}`,
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    );
    check(!down.startsWith("HTTP"), `apiserver unreachable while stopped (got ${down})`);
    step(`apiserver stopped in ${secs(t)}s (requests fail: ${down})`);
    t = Date.now();
    await c.startApiserver();
    const job = await ok<{ status?: { succeeded?: number } }>(c, "GET", `/apis/batch/v1/namespaces/${ns}/jobs/migrate`);
    check(job.status?.succeeded === 1, "Job still there after the restart");
    step(`apiserver restarted on the same port in ${secs(t)}s; data intact`);
  } finally {
    const t = Date.now();
    const dir = cluster.dir;
    await cluster.stop();
    check(!fs.existsSync(dir) || process.env.DM_KEEP_CLUSTER === "1", `${dir} removed`);
    step(`stopped in ${secs(t)}s`);
  }
  console.log(`SMOKE OK — start-up ${startup}s, total ${secs(t0)}s`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
