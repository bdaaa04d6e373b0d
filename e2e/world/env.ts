// One call gives an end-to-end test everything it runs against on the real node:
//
//   const env = await nodeEnv(t);
//   const { digest } = await env.images.push("app", "latest", spec);     // CI pushes a new latest
//   await env.kube.createObject(deployment(env.namespace, …, env.images.ref("app", "latest")));
//
// - the world of the test run (control plane, real node, PostgreSQL, the shipped images);
// - a fresh namespace, deleted at the end (its pods stopped by the kubelet);
// - image repositories of its own in the node's registry (<registry>/<namespace>/<name>);
// - a database of its own;
// - what containerd started for the namespace's pods (from containerd's event stream);
// - a host directory the test's pods can mount (hostPath), for files a test flips (hold, fail).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { t as tapRoot } from "tap";
import type { Test } from "tap";
import type { ObjectList } from "../kit/client.ts";
import type { KubeClient } from "../kit/client.ts";
import { errorText, waitFor } from "../kit/wait.ts";
import { ContainerStarts } from "../node/container-starts.ts";
import type { Database, Postgres } from "../postgres/postgres.ts";
import { namespaceFor } from "../harness/env.ts";
import type { ClusterHandle } from "../harness/external-cluster.ts";
import { AppImages } from "./app-images.ts";
import { world } from "./connect.ts";
import type { WorldInfo } from "./world.ts";

export interface NodeEnvOptions {
  /** Create a database (default true). */
  postgres?: boolean;
}

export interface NodeEnv {
  world: WorldInfo;
  cluster: ClusterHandle;
  /** admin client */
  kube: KubeClient;
  namespace: string;
  images: AppImages;
  /** the real node's name */
  nodeName: string;
  postgres: Omit<Postgres, "stop">;
  database: Database | undefined;
  /** containers containerd started for this namespace's pods */
  starts: ContainerStarts;
  /** a directory on the node for hostPath volumes of this test's pods */
  hostDir: string;
  /** a container's log (through the API server and the kubelet) */
  logs(pod: string, container: string, previous?: boolean): Promise<string>;
  log(msg: string): void;
}

const verbose = Boolean(process.env.DM_E2E_VERBOSE);
const log = (msg: string): void => {
  if (verbose) console.error(`[e2e ${new Date().toISOString()}] ${msg}`);
};

export async function nodeEnv(t: Test, opts: NodeEnvOptions = {}): Promise<NodeEnv> {
  const w = await world((fn) => tapRoot.teardown(fn));
  const namespace = namespaceFor(t.name);
  await w.cluster.ensureNamespace(namespace);
  const starts = new ContainerStarts(w.info.node.containerdSocket, [namespace]);
  await starts.start();
  const images = new AppImages({ registry: w.info.node.registry, base: w.info.images.base }, namespace);
  const hostDir = fs.mkdtempSync(path.join(os.tmpdir(), `dm-${namespace}-`));
  fs.chmodSync(hostDir, 0o777);

  t.teardown(async () => {
    try {
      await w.kube.delete(`/api/v1/namespaces/${namespace}`);
      // The kubelet stops the namespace's pods (graceful termination); wait, so nothing of this
      // test runs on into the next one.
      await waitFor(
        async () => (await w.kube.get<ObjectList<unknown>>(`/api/v1/namespaces/${namespace}/pods`)).items.length === 0,
        { what: `pods of namespace ${namespace} to be deleted`, timeoutMs: 90_000 },
      );
    } catch (err) {
      t.fail(`teardown of ${namespace}: ${errorText(err)}`);
    } finally {
      starts.stop();
      images.close();
      fs.rmSync(hostDir, { recursive: true, force: true });
    }
  });

  const database = opts.postgres === false ? undefined : await w.postgres.createDatabase(namespace.replace(/-/g, "_"));
  return {
    world: w.info,
    cluster: w.cluster,
    kube: w.kube,
    namespace,
    images,
    nodeName: w.info.node.name,
    postgres: w.postgres,
    database,
    starts,
    hostDir,
    async logs(pod, container, previous = false) {
      const text = await w.kube.request<unknown>("GET", `/api/v1/namespaces/${namespace}/pods/${pod}/log`, {
        query: { container, ...(previous ? { previous: true } : {}) },
      });
      return typeof text === "string" ? text : JSON.stringify(text);
    },
    log,
  };
}
