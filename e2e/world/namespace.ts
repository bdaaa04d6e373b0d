// A namespace of its own on the world's real node, for whoever runs there — a test (through
// nodeEnv() in env.ts, which ties it to tap) or the demo (which is not a test, so this module never
// loads tap):
//
//   const env = await openNodeEnv("shop-demo-1a2b3c", {}, atEnd);   // … and at the end:
//   await env.close();                                               // namespace deleted, pods gone
//
// What it gives is listed in env.ts.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ObjectList } from "../kit/client.ts";
import type { KubeClient } from "../kit/client.ts";
import { waitFor } from "../kit/wait.ts";
import { ContainerStarts } from "../node/container-starts.ts";
import type { Database, Postgres } from "../postgres/postgres.ts";
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

/**
 * Deletes `namespace` and waits until the kubelet has stopped its pods (graceful termination), so nothing
 * of it runs on into what comes next.
 */
export async function deleteNamespace(kube: KubeClient, namespace: string): Promise<void> {
  await kube.delete(`/api/v1/namespaces/${namespace}`);
  await waitFor(
    async () => (await kube.get<ObjectList<unknown>>(`/api/v1/namespaces/${namespace}/pods`)).items.length === 0,
    { what: `pods of namespace ${namespace} to be deleted`, timeoutMs: 90_000 },
  );
}

/** A NodeEnv its owner closes: the namespace deleted (its pods stopped by the kubelet), the rest removed. */
export interface OwnedNodeEnv extends NodeEnv {
  close(): Promise<void>;
}

/**
 * Creates namespace `namespace` (with its image repositories, host directory, containerd's starts
 * and, unless `opts.postgres` is false, a database) in the world of this run; `atEnd` is passed to
 * world() (what must run when the process is done with a world it started itself).
 */
export async function openNodeEnv(
  namespace: string,
  opts: NodeEnvOptions = {},
  atEnd?: (fn: () => Promise<void>) => void,
): Promise<OwnedNodeEnv> {
  const w = await world(atEnd);
  await w.cluster.ensureNamespace(namespace);
  const starts = new ContainerStarts(w.info.node.containerdSocket, [namespace]);
  await starts.start();
  const images = new AppImages({ registry: w.info.node.registry, base: w.info.images.base }, namespace);
  const hostDir = fs.mkdtempSync(path.join(os.tmpdir(), `dm-${namespace}-`));
  fs.chmodSync(hostDir, 0o777);

  const close = async (): Promise<void> => {
    try {
      await deleteNamespace(w.kube, namespace);
    } finally {
      starts.stop();
      images.close();
      fs.rmSync(hostDir, { recursive: true, force: true });
    }
  };

  let database: Database | undefined;
  try {
    database = opts.postgres === false ? undefined : await w.postgres.createDatabase(namespace.replace(/-/g, "_"));
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
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
    close,
  };
}
