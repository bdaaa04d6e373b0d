// The world a test run shares: one control plane (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler), one real node (registry, containerd + runc, CNI, kubelet), PostgreSQL, and the
// images users install (Dockerfile.reconciler and Dockerfile.plugin built with buildah) in the
// node's registry. `e2e/world/run.ts` starts it, runs the tests with DM_WORLD naming its
// description file, and stops it — also when the tests fail or are interrupted. Each test file
// connects to it (e2e/world/connect.ts) and works in namespaces of its own.
//
// Everything listens on 127.0.0.1; pods that must reach the host's services use hostNetwork.
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ensureBinaries, nodeControllers, startCluster } from "../cluster/cluster.ts";
import type { Cluster } from "../cluster/cluster.ts";
import { execFileText } from "../kit/processes.ts";
import { reclaimAbandonedNode, startNode } from "../node/node.ts";
import type { RealNode } from "../node/node.ts";
import { buildImage, ensureBaseImage, push, repoRoot } from "../node/images.ts";
import { startPostgres } from "../postgres/postgres.ts";
import { serveControl } from "./control.ts";
import type { Postgres, PostgresAddress } from "../postgres/postgres.ts";

/** Where `run.ts --keep` records the kept world's description file (one world per machine). */
export const KEPT_WORLD = "/run/digest-migrations-e2e/kept-world";

/** What a test process needs to use the world (written as JSON; DM_WORLD names the file). */
export interface WorldInfo {
  ownerPid: number;
  dir: string;
  server: string;
  adminKubeconfig: string;
  caFile: string;
  /** the key the API server signs service-account tokens with (a test makes an expired token with it) */
  serviceAccountKeyFile: string;
  node: {
    name: string;
    /** host:port of the node's registry */
    registry: string;
    containerdSocket: string;
    kubeletLog: string;
    containerdLog: string;
  };
  images: {
    /** local (buildah) name of the Node.js base of the test applications */
    base: string;
    /** the reconciler image in the node's registry, pinned by digest */
    reconciler: string;
    /** the plugin image: its local (buildah) name, for running `generate` inside it, and its pushed reference */
    plugin: string;
    pluginRef: string;
  };
  postgres: PostgresAddress;
  /** http://127.0.0.1:<port> of the world's fault-injection endpoint (e2e/world/control.ts) */
  control: string;
  /**
   * `--feature-gates` of the API server and the kubelet (DM_WORLD_FEATURE_GATES), "" for none: a
   * 1.20 cluster as it ships. The probe-cost benchmark starts its world with EphemeralContainers=true.
   */
  featureGates: string;
  /** seconds per start-up phase, printed with the test run's budgets */
  timings: Record<string, number>;
}

export interface World {
  info: WorldInfo;
  infoFile: string;
  cluster: Cluster;
  node: RealNode;
  postgres: Postgres;
  stop(): Promise<void>;
}

/**
 * A hash of what the images are built from (the working tree's files that git does not ignore,
 * and the Dockerfiles), so a rebuild is skipped when nothing changed since the last run on this
 * machine. The images carry it as a label.
 */
export async function sourceHash(): Promise<string> {
  const files = (
    await execFileText("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: repoRoot })
  )
    .split("\0")
    .filter(Boolean)
    .sort();
  const hash = createHash("sha256");
  for (const f of files) {
    let content: Buffer;
    try {
      content = fs.readFileSync(path.join(repoRoot, f));
    } catch {
      continue; // deleted in the working tree
    }
    hash.update(f).update("\0").update(content).update("\0");
  }
  return hash.digest("hex").slice(0, 16);
}

const SOURCE_LABEL = "net.digest-migrations.source";

async function labelOf(image: string): Promise<string | undefined> {
  try {
    const out = await execFileText("buildah", [
      "inspect",
      "--type",
      "image",
      "--format",
      `{{index .Docker.Config.Labels "${SOURCE_LABEL}"}}`,
      image,
    ]);
    return out.trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Builds Dockerfile.<component> as a user would (buildah bud, NODE_IMAGE = the test base) unless
 *  an image of the same sources is in buildah's storage already. */
export async function shippedImage(
  component: "reconciler" | "plugin",
  base: string,
  hash: string,
  log: (l: string) => void,
): Promise<string> {
  // The sources' hash in the tag: checkouts of different sources on one machine never share a tag.
  const tag = `localhost/digest-migrations/${component}:e2e-${hash}`;
  if ((await labelOf(tag)) === `${hash}/${base}`) {
    log(`[world] ${tag}: built from these sources already`);
    return tag;
  }
  log(`[world] buildah bud -f Dockerfile.${component} (about a minute)`);
  await buildImage({
    file: path.join(repoRoot, `Dockerfile.${component}`),
    context: repoRoot,
    tag,
    buildArgs: { NODE_IMAGE: base },
    labels: { [SOURCE_LABEL]: `${hash}/${base}` },
    log: (l) => log(`  ${l}`),
  });
  return tag;
}

export async function startWorld(log: (line: string) => void = () => {}): Promise<World> {
  const timings: Record<string, number> = {};
  const t0 = Date.now();
  const time = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const start = Date.now();
    try {
      return await f();
    } finally {
      timings[name] = (Date.now() - start) / 1000;
    }
  };
  // A machine runs one world at a time (one node): refuse before building anything if one runs.
  reclaimAbandonedNode(log);
  const dir = fs.mkdtempSync(path.join(process.env.DM_CLUSTER_TMPDIR || os.tmpdir(), "dm-world-"));
  log(`[world] Kubernetes binaries (the first run on a machine builds them: about 15 minutes on 2 cores)`);
  const bins = await time("kubernetes binaries", () => ensureBinaries(log));
  const featureGates = process.env.DM_WORLD_FEATURE_GATES ?? "";
  if (featureGates) log(`[world] feature gates of the API server and the kubelet: ${featureGates}`);

  let cluster: Cluster | undefined;
  let node: RealNode | undefined;
  let postgres: Postgres | undefined;
  let stopControl: (() => Promise<void>) | undefined;
  const stop = async (): Promise<void> => {
    const errors: unknown[] = [];
    for (const s of [() => stopControl?.(), () => node?.stop(), () => cluster?.stop(), () => postgres?.stop()]) {
      try {
        await s();
      } catch (err) {
        errors.push(err);
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
    if (errors.length) throw new AggregateError(errors, `stopping the world: ${errors.map(String).join("; ")}`);
  };

  try {
    const images = (async () => {
      const base = await time("base image", () => ensureBaseImage(log));
      const hash = await sourceHash();
      const reconciler = await time("reconciler image", () => shippedImage("reconciler", base, hash, log));
      const plugin = await time("plugin image", () => shippedImage("plugin", base, hash, log));
      return { base, reconciler, plugin };
    })();
    const machine = (async () => {
      cluster = await time("control plane start", () =>
        startCluster({
          log,
          scheduler: true,
          controllers: nodeControllers,
          parentDir: dir,
          ...(featureGates ? { apiserverArgs: [`--feature-gates=${featureGates}`] } : {}),
        }),
      );
      const c = cluster;
      node = await time("node start to Ready", () =>
        startNode({ cluster: c, bins, log, ...(featureGates ? { featureGates } : {}) }),
      );
      postgres = await time("postgres start", () => startPostgres({ log }));
      return { cluster: c, node, postgres };
    })();
    // Images build while the control plane and the node start; both finish before anything is
    // stopped, and a failure of either is reported.
    const [builtResult, startedResult] = await Promise.allSettled([images, machine]);
    if (builtResult.status === "rejected") throw builtResult.reason;
    if (startedResult.status === "rejected") throw startedResult.reason;
    const built = builtResult.value;
    const started = startedResult.value;
    const control = await serveControl(started.cluster, started.node);
    stopControl = () => control.close();
    const reconciler = await push(built.reconciler, started.node.registry.ref("digest-migrations/reconciler:e2e"));
    const plugin = await push(built.plugin, started.node.registry.ref("digest-migrations/plugin:e2e"));

    const info: WorldInfo = {
      ownerPid: process.pid,
      dir,
      server: started.cluster.server,
      adminKubeconfig: started.cluster.adminKubeconfig,
      caFile: started.cluster.caFile,
      serviceAccountKeyFile: started.cluster.serviceAccountKeyFile,
      featureGates,
      node: {
        name: started.node.name,
        registry: started.node.registry.host,
        containerdSocket: started.node.containerd.socket,
        kubeletLog: started.node.kubelet.process?.logFile ?? "",
        containerdLog: started.node.containerd.process?.logFile ?? "",
      },
      images: {
        base: built.base,
        reconciler: `${reconciler.ref}@${reconciler.digest}`,
        plugin: built.plugin,
        pluginRef: `${plugin.ref}@${plugin.digest}`,
      },
      postgres: { host: started.postgres.host, port: started.postgres.port, dir: started.postgres.dir },
      control: control.url,
      timings: { ...timings, "world start (total)": (Date.now() - t0) / 1000 },
    };
    const infoFile = path.join(dir, "world.json");
    fs.writeFileSync(infoFile, JSON.stringify(info, null, 2));
    log(
      `[world] ready in ${((Date.now() - t0) / 1000).toFixed(1)}s: ${info.server}, node ${info.node.name}, registry ${info.node.registry}`,
    );
    return { info, infoFile, cluster: started.cluster, node: started.node, postgres: started.postgres, stop };
  } catch (err) {
    await stop().catch((e: unknown) => log(`[world] clean-up after a failed start: ${String(e)}`));
    throw err;
  }
}
