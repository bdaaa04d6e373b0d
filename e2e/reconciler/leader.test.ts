// Leader election against a real kube-apiserver, authenticated as a ServiceAccount that holds
// only the leader-election Role of reconciler/deploy/rbac.yaml (so the Role is proven sufficient).
import t from "tap";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { KubeConfig } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { startCluster } from "../cluster/cluster.ts";
import type { Cluster } from "../cluster/cluster.ts";
import { runLeaderElection } from "../../reconciler/src/leader.ts";
import { createLogger } from "../../reconciler/src/log.ts";

const LEASE = "digest-migrations-reconciler";
const TIMING = { leaseDurationSeconds: 3, renewDeadlineSeconds: 2, retryPeriodSeconds: 0.5 };
const silent = createLogger({ level: "silent" });

interface Lease {
  metadata: { resourceVersion: string };
  spec: { holderIdentity?: string; leaseTransitions?: number; leaseDurationSeconds?: number; renewTime?: string };
}

const rbac = parseAllDocuments(
  readFileSync(fileURLToPath(new URL("../../reconciler/deploy/rbac.yaml", import.meta.url)), "utf8"),
).map((d) => d.toJSON() as { kind: string; metadata: { name: string }; subjects?: { namespace?: string }[] });

let cluster: Cluster;
t.before(async () => {
  cluster = await startCluster();
});
t.teardown(async () => {
  await cluster?.stop();
});

/** A namespace with the reconciler's ServiceAccount bound to the leader-election Role only. */
async function namespaceWithRole(namespace: string): Promise<KubeConfig> {
  const kubeconfig = await cluster.kubeconfigFor(namespace, "digest-migrations-reconciler");
  for (const kind of ["Role", "RoleBinding"]) {
    const doc = structuredClone(rbac.find((d) => d.kind === kind)!);
    for (const subject of doc.subjects ?? []) subject.namespace = namespace;
    const plural = kind === "Role" ? "roles" : "rolebindings";
    const res = await cluster.request(
      "POST",
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/${plural}`,
      doc,
    );
    if (res.status !== 201)
      throw new Error(`creating ${kind} in ${namespace}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
  }
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return kc;
}

async function readLease(namespace: string): Promise<Lease | undefined> {
  const res = await cluster.request<Lease>(
    "GET",
    `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${LEASE}`,
  );
  return res.status === 200 ? res.body : undefined;
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!(await cond())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Date.now() - started;
}

/** A candidate with its own abort switch and a record of when it led. */
class Candidate {
  leading = false;
  startedAt = 0;
  readonly identity: string;
  readonly abort = new AbortController();
  readonly done: Promise<void>;
  constructor(
    identity: string,
    kube: KubeConfig,
    namespace: string,
    peers: Candidate[],
    violations: string[],
    releaseOnCancel = true,
  ) {
    this.identity = identity;
    peers.push(this);
    this.done = runLeaderElection({
      kube,
      namespace,
      name: LEASE,
      identity,
      ...TIMING,
      releaseOnCancel,
      signal: this.abort.signal,
      log: silent,
      onStartedLeading: () => {
        const others = peers.filter((p) => p !== this && p.leading).map((p) => p.identity);
        if (others.length > 0) violations.push(`${identity} started leading while ${others.join(", ")} led`);
        this.leading = true;
        this.startedAt = Date.now();
      },
      onStoppedLeading: () => {
        this.leading = false;
      },
    });
  }
}

t.test("two candidates: exactly one leads, and the Lease names it", async (t) => {
  const kube = await namespaceWithRole("leader-one");
  const peers: Candidate[] = [];
  const violations: string[] = [];
  const a = new Candidate("a", kube, "leader-one", peers, violations);
  const b = new Candidate("b", kube, "leader-one", peers, violations);
  t.teardown(async () => {
    a.abort.abort();
    b.abort.abort();
    await Promise.all([a.done, b.done]);
  });
  await until("a leader", () => a.leading || b.leading, 10_000);
  const leader = a.leading ? a : b;
  // Several renewals later (spec.renewTime moved twice), still exactly one leader and the same one.
  const renewals = new Set<string>();
  await until(
    "two more renewals",
    async () => {
      renewals.add(String((await readLease("leader-one"))?.spec.renewTime));
      return renewals.size >= 3;
    },
    5000,
  );
  t.same(
    peers.filter((p) => p.leading).map((p) => p.identity),
    [leader.identity],
    "exactly one leader",
  );
  t.equal((await readLease("leader-one"))?.spec.holderIdentity, leader.identity);
  t.same(violations, [], "never two leaders at once");
});

t.test("a leader that stops renewing is replaced within the lease duration", async (t) => {
  const kube = await namespaceWithRole("leader-crash");
  const peers: Candidate[] = [];
  const violations: string[] = [];
  const a = new Candidate("a", kube, "leader-crash", peers, violations, false);
  await until("a to lead", () => a.leading, 10_000);
  const b = new Candidate("b", kube, "leader-crash", peers, violations);
  t.teardown(async () => {
    b.abort.abort();
    await b.done;
  });
  await until(
    "b to see the lease held",
    async () => (await readLease("leader-crash"))?.spec.holderIdentity === "a",
    5000,
  );
  t.notOk(b.leading, "b waits while a renews");
  // A crash: renewals stop, the Lease is not released.
  const killed = Date.now();
  a.abort.abort();
  await a.done;
  t.equal((await readLease("leader-crash"))?.spec.holderIdentity, "a", "the Lease still names a");
  await until("b to take over", () => b.leading, 10_000);
  const takeover = b.startedAt - killed;
  // The lease runs leaseDuration from b's last sight of a renewal, which trails the renewal by at
  // most one retry period; b notices expiry at its next retry.
  const limitMs = (TIMING.leaseDurationSeconds + 2 * 1.2 * TIMING.retryPeriodSeconds) * 1000 + 500;
  t.ok(takeover <= limitMs, `took over in ${takeover} ms (≤ ${limitMs})`);
  t.ok(
    takeover >= (TIMING.leaseDurationSeconds - TIMING.retryPeriodSeconds) * 1000 - 300,
    `not before the lease expired (${takeover} ms)`,
  );
  const lease = await readLease("leader-crash");
  t.equal(lease?.spec.holderIdentity, "b");
  t.equal(lease?.spec.leaseTransitions, 1, "one transition recorded");
  t.same(violations, []);
});

t.test("a graceful release hands over at the next retry, not after the lease duration", async (t) => {
  const kube = await namespaceWithRole("leader-release");
  const peers: Candidate[] = [];
  const violations: string[] = [];
  const a = new Candidate("a", kube, "leader-release", peers, violations);
  await until("a to lead", () => a.leading, 10_000);
  const b = new Candidate("b", kube, "leader-release", peers, violations);
  t.teardown(async () => {
    b.abort.abort();
    await b.done;
  });
  await until(
    "b to see the lease held",
    async () => (await readLease("leader-release"))?.spec.holderIdentity === "a",
    5000,
  );
  const released = Date.now();
  a.abort.abort();
  await a.done;
  t.notOk(a.leading, "a stopped leading before releasing");
  await until("b to take over", () => b.leading, 10_000);
  const handover = b.startedAt - released;
  t.ok(handover < TIMING.leaseDurationSeconds * 1000 - 500, `handed over in ${handover} ms`);
  t.same(violations, []);
});

t.test("a leader that cannot renew steps down within the renew deadline", async (t) => {
  const kube = await namespaceWithRole("leader-forbidden");
  const peers: Candidate[] = [];
  const a = new Candidate("a", kube, "leader-forbidden", peers, []);
  t.teardown(async () => {
    a.abort.abort();
    await a.done;
  });
  await until("a to lead", () => a.leading, 10_000);
  // Take away its Role: renewals now fail with 403.
  const res = await cluster.request(
    "DELETE",
    `/apis/rbac.authorization.k8s.io/v1/namespaces/leader-forbidden/rolebindings/digest-migrations-reconciler-leader-election`,
  );
  t.equal(res.status, 200);
  const revoked = Date.now();
  await until("a to step down", () => !a.leading, 10_000);
  const elapsed = Date.now() - revoked;
  const limitMs = (TIMING.renewDeadlineSeconds + TIMING.retryPeriodSeconds) * 1000 + 500;
  t.ok(
    elapsed <= limitMs,
    `stepped down after ${elapsed} ms (≤ ${limitMs}), before the lease (${TIMING.leaseDurationSeconds} s) expires for others`,
  );
});
