// Two reconciler processes against a real kube-apiserver, authenticated as the ServiceAccount of
// reconciler/deploy/rbac.yaml (so the RBAC is proven sufficient to start, sync and lead): both
// become ready, exactly one leads, and SIGTERM on the leader exits cleanly and hands the Lease
// over at the other's next retry.
import t from "tap";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { startCluster } from "../cluster/cluster.ts";
import { freePort } from "../kit/ports.ts";
import type { Cluster } from "../cluster/cluster.ts";

const NAMESPACE = "digest-migrations-system";
const MAIN = fileURLToPath(new URL("../../reconciler/src/main.ts", import.meta.url));
const deploy = (file: string) =>
  parseAllDocuments(
    readFileSync(fileURLToPath(new URL(`../../reconciler/deploy/${file}`, import.meta.url)), "utf8"),
  ).map((d) => d.toJSON() as { apiVersion: string; kind: string; metadata: { name: string } });

const PLURALS: Record<string, string> = {
  CustomResourceDefinition: "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
  ClusterRole: "/apis/rbac.authorization.k8s.io/v1/clusterroles",
  ClusterRoleBinding: "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
  Role: `/apis/rbac.authorization.k8s.io/v1/namespaces/${NAMESPACE}/roles`,
  RoleBinding: `/apis/rbac.authorization.k8s.io/v1/namespaces/${NAMESPACE}/rolebindings`,
};

async function until<T>(
  what: string,
  cond: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await cond();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface Replica {
  name: string;
  child: ChildProcess;
  metricsPort: number;
  waiterPort: number;
  output: () => string;
  exit: Promise<number | null>;
}

let cluster: Cluster;
let kubeconfig: string;
t.before(async () => {
  cluster = await startCluster();
  kubeconfig = await cluster.kubeconfigFor(NAMESPACE, "digest-migrations-reconciler");
  for (const doc of [...deploy("crd.yaml"), ...deploy("rbac.yaml")]) {
    const collection = PLURALS[doc.kind];
    if (!collection) continue; // the ServiceAccount exists already
    const res = await cluster.request("POST", collection, doc);
    if (res.status !== 201)
      throw new Error(`creating ${doc.kind} ${doc.metadata.name}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
  }
  await until(
    "the Migrator CRD to be served",
    async () => (await cluster.request("GET", `/apis/migrations.coderanger.net/v1beta1/migrators`)).status === 200,
    60_000,
  );
});
t.teardown(async () => {
  await cluster?.stop();
});

async function startReplica(name: string): Promise<Replica> {
  const metricsPort = await freePort();
  const waiterPort = await freePort();
  const child = spawn(
    process.execPath,
    [
      MAIN,
      `--kubeconfig=${kubeconfig}`,
      `--identity=${name}`,
      "--bind-address=127.0.0.1",
      `--metrics-port=${metricsPort}`,
      `--waiter-port=${waiterPort}`,
      `--leader-election-namespace=${NAMESPACE}`,
      "--lease-duration=3",
      "--renew-deadline=2",
      "--retry-period=0.5",
      "--log-level=debug",
    ],
    { env: { PATH: process.env["PATH"] ?? "", POD_NAMESPACE: NAMESPACE }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { name, child, metricsPort, waiterPort, output: () => output, exit };
}

async function get(port: number, path: string): Promise<{ status: number; text: string } | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: res.status, text: await res.text() };
  } catch {
    return undefined;
  }
}

async function leads(replica: Replica): Promise<boolean> {
  const metrics = await get(replica.metricsPort, "/metrics");
  return /^digest_migrations_leader 1$/m.test(metrics?.text ?? "");
}

t.test("two replicas: both ready, one leader, SIGTERM hands over", async (t) => {
  const replicas = [await startReplica("r1"), await startReplica("r2")];
  t.teardown(() => {
    for (const r of replicas) r.child.kill("SIGKILL");
  });
  const describe = () => replicas.map((r) => `--- ${r.name}\n${r.output().slice(-3000)}`).join("\n");
  try {
    for (const r of replicas)
      await until(`${r.name} to be ready`, async () => (await get(r.metricsPort, "/readyz"))?.status === 200, 120_000);
  } catch (error) {
    t.fail(`${(error as Error).message}\n${describe()}`);
    return;
  }
  const leader = await until(
    "a leader",
    async () => {
      const leading = [];
      for (const r of replicas) if (await leads(r)) leading.push(r);
      return leading.length === 1 ? leading[0] : undefined;
    },
    30_000,
  );
  const follower = replicas.find((r) => r !== leader)!;
  t.notOk(await leads(follower), "exactly one leader");
  const lease = await cluster.request<{ spec: { holderIdentity: string } }>(
    "GET",
    `/apis/coordination.k8s.io/v1/namespaces/${NAMESPACE}/leases/digest-migrations-reconciler`,
  );
  t.equal(lease.body.spec.holderIdentity, leader.name, "the Lease names the leader");

  // Any replica answers waiters from its caches.
  const answer = await get(
    follower.waiterPort,
    "/v1/wait?namespace=default&pod=nothing-here&migrator=none&container=app&timeoutSeconds=0",
  );
  t.equal(answer?.status, 200);
  t.match(JSON.parse(answer?.text ?? "{}"), { ready: false });

  const terminated = Date.now();
  leader.child.kill("SIGTERM");
  t.equal(await leader.exit, 0, "the leader exits 0 on SIGTERM");
  t.ok(Date.now() - terminated < 10_000, `shut down in ${Date.now() - terminated} ms`);
  t.match(leader.output(), /released the lease/, "it released the Lease");
  // Measured on the Lease (spec.acquireTime, written by the follower), not on a later scrape.
  const acquired = await until(
    "the follower to take the Lease",
    async () => {
      const res = await cluster.request<{ spec: { holderIdentity?: string; acquireTime?: string } }>(
        "GET",
        `/apis/coordination.k8s.io/v1/namespaces/${NAMESPACE}/leases/digest-migrations-reconciler`,
      );
      return res.body.spec.holderIdentity === follower.name && res.body.spec.acquireTime;
    },
    10_000,
  );
  const handover = Date.parse(acquired) - terminated;
  t.ok(handover < 3000, `the follower took the Lease ${handover} ms after SIGTERM (lease duration 3 s)`);
  await until("the follower to report leading", () => leads(follower), 10_000);
});
