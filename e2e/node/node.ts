// A real Kubernetes node on this machine, for the end-to-end tests: the registry, containerd + runc,
// the CNI bridge and the kubelet, registered with a control plane from e2e/cluster.
//
//   const node = await startNode({ cluster, bins, log });
//   node.registry.ref("app:latest")     // 127.0.0.1:<port>/app:latest
//   await node.stop();                  // also when a test failed: processes, pods, mounts, bridge, cgroups
//
// Only one node runs on a machine at a time (the kubelet's host paths and kernel parameters are
// machine-wide): a state file under /run records what it touches, and a start finding the state
// of a node whose owner died cleans that node up first.
import fs from "node:fs";
import path from "node:path";
import type { Binaries, Cluster } from "../cluster/cluster.ts";
import { onExitSync } from "../kit/processes.ts";
import { Containerd } from "./containerd.ts";
import {
  cleanHost,
  createCgroupRoot,
  processAlive,
  readState,
  readSysctls,
  snapshotHostPaths,
  writeState,
} from "./host.ts";
import type { HostState } from "./host.ts";
import { ImageRegistry } from "./image-registry.ts";
import { buildPauseImage, push } from "./images.ts";
import { Kubelet } from "./kubelet.ts";

/** Where the running node's state is recorded (one node per machine). */
export const STATE_FILE = process.env.DM_NODE_STATE ?? "/run/digest-migrations-e2e/node.json";
const NODE_PARENT = process.env.DM_NODE_DIR ?? "/var/lib/digest-migrations-e2e";
const CGROUP_ROOT = "/digest-migrations-e2e";
const BRIDGE = "dm-cni0";
/** The pods' network (CNI bridge + host-local). No test traffic is sent to it: pods that need to
 *  reach anything on this machine use hostNetwork and 127.0.0.1. */
const POD_SUBNET = "10.217.0.0/24";
const CNI_BIN_DIR = "/usr/lib/cni";

export interface NodeOptions {
  cluster: Cluster;
  bins: Binaries;
  log?: (line: string) => void;
  /** Node labels (kubernetes.io/hostname and the OS/arch labels come from the kubelet). */
  labels?: Record<string, string>;
  /** the kubelet's `--feature-gates` (the API server's must match) */
  featureGates?: string;
}

export interface RealNode {
  /** the Node's name: 127.0.0.1 */
  name: string;
  registry: ImageRegistry;
  containerd: Containerd;
  kubelet: Kubelet;
  dir: string;
  /** the pause image pods' sandboxes run */
  sandboxImage: string;
  stop(): Promise<void>;
}

/** Cleans up a node whose owner died; refuses if its owner still runs. */
export function reclaimAbandonedNode(log: (line: string) => void): void {
  const old = readState(STATE_FILE);
  if (!old) return;
  if (old.ownerPid !== process.pid && processAlive(old.ownerPid)) {
    throw new Error(
      `a node of digest-migrations' tests is running on this machine (process ${old.ownerPid}, ${old.dir}); ` +
        `stop it first (a machine runs one node at a time)`,
    );
  }
  log(`[node] cleaning up the node left by process ${old.ownerPid} (${old.dir})`);
  const problems = cleanHost(old);
  if (problems.length) throw new Error(`cleaning up the previous node failed:\n- ${problems.join("\n- ")}`);
  fs.rmSync(STATE_FILE, { force: true });
}

export async function startNode(opts: NodeOptions): Promise<RealNode> {
  const log = opts.log ?? (() => {});
  const t0 = Date.now();
  const phase = (what: string): void => log(`[node +${((Date.now() - t0) / 1000).toFixed(1)}s] ${what}`);
  reclaimAbandonedNode(log);

  fs.mkdirSync(NODE_PARENT, { recursive: true });
  const dir = fs.mkdtempSync(path.join(NODE_PARENT, "node-"));
  const state: HostState = {
    ownerPid: process.pid,
    dir,
    cgroupRoot: CGROUP_ROOT,
    bridge: BRIDGE,
    sysctls: readSysctls(),
    hostPaths: snapshotHostPaths(),
  };
  // Written before anything is started, so a crash at any later point is cleaned up by the next start.
  writeState(STATE_FILE, state);

  let stopped = false;
  const forgetExitHook = onExitSync(() => {
    if (!stopped) cleanHost(state);
    fs.rmSync(STATE_FILE, { force: true });
  });

  const registry = new ImageRegistry(path.join(dir, "registry"));
  const cniConfDir = path.join(dir, "cni", "net.d");
  const name = "127.0.0.1";
  let containerd: Containerd | undefined;
  let kubelet: Kubelet | undefined;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await kubelet?.stop();
    await containerd?.stop();
    await registry.stop();
    // The node's pods, their shims, mounts and network namespaces are gone with the kubelet and
    // containerd only on a real node's shutdown; here they are removed explicitly.
    const problems = cleanHost(state);
    fs.rmSync(STATE_FILE, { force: true });
    forgetExitHook();
    await opts.cluster.request("DELETE", `/api/v1/nodes/${encodeURIComponent(name)}`).catch(() => undefined);
    if (problems.length) throw new Error(`the node left things behind:\n- ${problems.join("\n- ")}`);
  };

  try {
    phase("starting the registry");
    await registry.start();

    phase(`pushing the pause image to ${registry.host}`);
    const pauseVersion = fs.readFileSync(path.join(opts.bins.binDir, "pause.version"), "utf8").trim();
    const sandbox = await push(
      await buildPauseImage(opts.bins.pause, pauseVersion),
      registry.ref(`pause:${pauseVersion}`),
    );
    const sandboxImage = sandbox.ref;

    fs.mkdirSync(cniConfDir, { recursive: true });
    fs.writeFileSync(
      path.join(cniConfDir, "10-digest-migrations-e2e.conflist"),
      JSON.stringify(
        {
          cniVersion: "0.4.0",
          name: "digest-migrations-e2e",
          plugins: [
            {
              type: "bridge",
              bridge: BRIDGE,
              // No gateway and no masquerading: the pods' network stays inside the bridge.
              isGateway: false,
              ipMasq: false,
              ipam: {
                type: "host-local",
                ranges: [[{ subnet: POD_SUBNET }]],
                dataDir: path.join(dir, "cni", "ipam"),
              },
            },
          ],
        },
        null,
        2,
      ),
    );

    phase("starting containerd");
    containerd = new Containerd({
      dir: path.join(dir, "containerd"),
      registry: registry.host,
      sandboxImage,
      cniConfDir,
      cniBinDir: CNI_BIN_DIR,
      log,
    });
    await containerd.start();

    phase(`starting the kubelet (node ${name})`);
    createCgroupRoot(CGROUP_ROOT);
    kubelet = new Kubelet({
      cluster: opts.cluster,
      binary: opts.bins.kubelet,
      dir: path.join(dir, "kubelet"),
      name,
      containerdSocket: containerd.socket,
      sandboxImage,
      cgroupRoot: CGROUP_ROOT,
      ...(opts.labels ? { labels: opts.labels } : {}),
      ...(opts.featureGates ? { featureGates: opts.featureGates } : {}),
    });
    await kubelet.start();
    phase("node Ready");
    const c = containerd;
    const k = kubelet;
    return {
      name,
      registry,
      containerd: c,
      kubelet: k,
      dir,
      sandboxImage,
      stop,
    };
  } catch (err) {
    await stop().catch((cleanupErr: unknown) => log(`[node] clean-up after a failed start: ${String(cleanupErr)}`));
    throw err;
  }
}
