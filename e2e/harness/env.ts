// One call gives an e2e test everything it runs against:
//
//   const env = await testEnv(t);
//   env.registry.push("registry.example/app", "latest", image);
//   await env.kube.createObject(deployment(env.namespace, ...));
//
// - a control plane: started once per test file (process) with e2e/cluster, or an existing one
//   when DM_KUBECONFIG names its admin kubeconfig;
// - a fresh namespace per call;
// - a node emulator (the kubelet) with its own nodes and registry, for that namespace only;
// - PostgreSQL on loopback, started once per file, with a fresh database per call.
// Everything is torn down through `t.teardown`, so it is stopped even when the test fails. All
// ports are picked free at start, so test files running in parallel never collide.
import { randomBytes } from "node:crypto";
import path from "node:path";
import { t as tapRoot } from "tap";
import type { Test } from "tap";
import { startCluster } from "../cluster/cluster.ts";
import { KubeClient, paths } from "../kit/client.ts";
import type { ObjectList } from "../kit/client.ts";
import { NodeEmulator } from "../emulator/emulator.ts";
import type { NodeSpec, Timing } from "../emulator/emulator.ts";
import { Registry } from "../emulator/registry.ts";
import { startPostgres } from "../postgres/postgres.ts";
import type { Database, Postgres } from "../postgres/postgres.ts";
import { externalCluster } from "./external-cluster.ts";
import type { ClusterHandle } from "./external-cluster.ts";
import { errorText, waitFor } from "../kit/wait.ts";

export type { ClusterHandle } from "./external-cluster.ts";

export interface TestEnvOptions {
  /** Node names (without the per-test prefix) and labels; default ["node-1"]. */
  nodes?: (string | NodeSpec)[];
  /** Start PostgreSQL and create a database (default true). */
  postgres?: boolean;
  timing?: Partial<Timing>;
}

export interface TestEnv {
  cluster: ClusterHandle;
  /** Admin client. */
  kube: KubeClient;
  namespace: string;
  registry: Registry;
  node: NodeEmulator;
  /** Real names of the emulated nodes, in the order asked for. */
  nodeNames: string[];
  /** Real name of the node asked for as `short` ("node-1" → "<namespace>-node-1"). */
  nodeName(short: string): string;
  postgres: Postgres | undefined;
  /** The test's own database (when postgres is on). */
  database: Database | undefined;
  log(msg: string): void;
}

const verbose = Boolean(process.env.DM_E2E_VERBOSE);
const log = (msg: string): void => {
  if (verbose) console.error(`[e2e ${new Date().toISOString()}] ${msg}`);
};

let clusterPromise: Promise<ClusterHandle> | undefined;
let postgresPromise: Promise<Postgres> | undefined;

/** The control plane for this test file: DM_KUBECONFIG's cluster, or one started now. */
export function sharedCluster(): Promise<ClusterHandle> {
  clusterPromise ??= (async () => {
    const external = process.env.DM_KUBECONFIG;
    if (external) {
      const handle = externalCluster(path.resolve(external));
      tapRoot.teardown(() => handle.stop());
      return handle;
    }
    const startedAt = Date.now();
    const cluster = await startCluster({ log });
    // Printed on every run: with cached binaries the control plane should start in well under 30 s.
    tapRoot.comment(`control plane started in ${((Date.now() - startedAt) / 1000).toFixed(1)}s`);
    tapRoot.teardown(() => cluster.stop());
    return {
      server: cluster.server,
      adminKubeconfig: cluster.adminKubeconfig,
      kubeconfigFor: (ns, sa) => cluster.kubeconfigFor(ns, sa),
      ensureNamespace: (ns) => cluster.ensureNamespace(ns),
      stopApiserver: () => cluster.stopApiserver(),
      startApiserver: () => cluster.startApiserver(),
      stop: () => cluster.stop(),
      owned: true,
    };
  })();
  return clusterPromise;
}

/** PostgreSQL for this test file. */
export function sharedPostgres(): Promise<Postgres> {
  postgresPromise ??= (async () => {
    const pg = await startPostgres({ log });
    tapRoot.teardown(() => pg.stop());
    return pg;
  })();
  return postgresPromise;
}

/** A namespace name from the test's name: e2e-<words>-<random>, a DNS label. */
export function namespaceFor(testName: string): string {
  const words = testName
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 30)
    .replace(/-+$/, "");
  return `e2e-${words || "test"}-${randomBytes(3).toString("hex")}`;
}

export async function testEnv(t: Test, opts: TestEnvOptions = {}): Promise<TestEnv> {
  const [cluster, postgres] = await Promise.all([
    sharedCluster(),
    opts.postgres === false ? Promise.resolve(undefined) : sharedPostgres(),
  ]);
  const kube = KubeClient.fromFile(cluster.adminKubeconfig);
  const namespace = namespaceFor(t.name);
  await cluster.ensureNamespace(namespace);
  const registry = new Registry();
  const specs = (opts.nodes ?? ["node-1"]).map((n) => (typeof n === "string" ? { name: n } : n));
  const realName = (short: string): string => `${namespace}-${short}`;
  const node = await NodeEmulator.start({
    client: kube,
    registry,
    namespaces: [namespace],
    nodes: specs.map((s) => ({ ...s, name: realName(s.name) })),
    ...(opts.timing ? { timing: opts.timing } : {}),
    log,
  });

  t.teardown(async () => {
    try {
      await kube.delete(paths.namespace(namespace));
      // Let the emulator finish the namespace's pods (graceful deletion), so nothing is left
      // running; the namespace controller removes the rest.
      await waitFor(async () => (await kube.get<ObjectList<unknown>>(paths.pods(namespace))).items.length === 0, {
        what: `pods of namespace ${namespace} to be deleted`,
        timeoutMs: 30_000,
      });
    } catch (err) {
      log(`teardown of ${namespace}: ${errorText(err)}`);
    } finally {
      await node.stop();
    }
  });

  const database = postgres ? await postgres.createDatabase(namespace.replace(/-/g, "_")) : undefined;
  return {
    cluster,
    kube,
    namespace,
    registry,
    node,
    nodeNames: specs.map((s) => realName(s.name)),
    nodeName: realName,
    postgres,
    database,
    log,
  };
}
