// The kubelet (1.20.2, built from Debian's source with the control plane) against the node's
// containerd. It authenticates with its own client certificate (user system:node:<name>, group
// system:nodes: the Node authorizer and NodeRestriction admission, as in a kubeadm cluster), serves
// its API on 127.0.0.1 with a certificate the apiserver verifies (logs, exec), and puts every pod
// under its own cgroup root.
//
// What this machine needs (Debian 12, root, cgroup v1, no swap): the cgroupfs driver (no systemd),
// failSwapOn false, no iptables utility chains, eviction thresholds a shared disk will not hit. The
// kubelet refuses a loopback --node-ip, so the node is *named* 127.0.0.1 (--hostname-override): its
// InternalIP is then 127.0.0.1, which the apiserver dials (--kubelet-preferred-address-types).
import fs from "node:fs";
import path from "node:path";
import type { Cluster } from "../cluster/cluster.ts";
import { issue, writeCertKubeconfig } from "../kit/pki.ts";
import { freePorts } from "../kit/ports.ts";
import { Supervised } from "../kit/processes.ts";
import { waitFor } from "../kit/wait.ts";

export interface KubeletOptions {
  cluster: Cluster;
  binary: string;
  dir: string;
  /** the Node's name (and hostname override) */
  name: string;
  containerdSocket: string;
  sandboxImage: string;
  cgroupRoot: string;
  labels?: Record<string, string>;
  /** `--feature-gates` of the kubelet, e.g. "EphemeralContainers=true" (the API server's must match) */
  featureGates?: string;
}

interface NodeObject {
  metadata: { name: string };
  spec?: { taints?: { key: string; effect: string }[] };
  status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

export class Kubelet {
  readonly name: string;
  readonly #opts: KubeletOptions;
  #process: Supervised | undefined;
  #args: string[] = [];

  constructor(opts: KubeletOptions) {
    this.#opts = opts;
    this.name = opts.name;
  }

  get process(): Supervised | undefined {
    return this.#process;
  }

  /** Certificates, kubeconfig and configuration file; done once, reused by restarts. */
  async #prepare(): Promise<void> {
    const { cluster, dir, name } = this.#opts;
    const pki = path.join(dir, "pki");
    fs.mkdirSync(pki, { recursive: true });
    const ca = { ...cluster.ca, dir: pki };
    const [client, serving] = await Promise.all([
      issue(ca, { name: "kubelet-client", commonName: `system:node:${name}`, organizations: ["system:nodes"] }),
      issue(ca, {
        name: "kubelet-serving",
        commonName: name,
        serving: { ips: ["127.0.0.1"], dnsNames: ["localhost"] },
      }),
    ]);
    const kubeconfig = writeCertKubeconfig(
      path.join(dir, "kubelet.kubeconfig"),
      cluster.server,
      cluster.ca,
      `system:node:${name}`,
      client,
    );
    const [port, healthzPort] = await freePorts(2);
    const config = path.join(dir, "kubelet-config.yaml");
    const q = JSON.stringify;
    fs.writeFileSync(
      config,
      `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: ${port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${healthzPort}
tlsCertFile: ${q(serving.cert)}
tlsPrivateKeyFile: ${q(serving.key)}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: ${q(cluster.ca.cert)}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
cgroupRoot: ${q(this.#opts.cgroupRoot)}
failSwapOn: false
resolvConf: /etc/resolv.conf
makeIPTablesUtilChains: false
serializeImagePulls: false
maxPods: 250
# A disk shared with the build caches: do not evict test pods or collect their images mid-run.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
containerLogMaxSize: 10Mi
`,
    );
    const labels = Object.entries(this.#opts.labels ?? {}).map(([k, v]) => `${k}=${v}`);
    this.#args = [
      `--config=${config}`,
      `--kubeconfig=${kubeconfig}`,
      "--container-runtime=remote",
      `--container-runtime-endpoint=unix://${this.#opts.containerdSocket}`,
      `--hostname-override=${name}`,
      `--root-dir=${path.join(dir, "root")}`,
      `--pod-infra-container-image=${this.#opts.sandboxImage}`,
      ...(labels.length ? [`--node-labels=${labels.join(",")}`] : []),
      ...(this.#opts.featureGates ? [`--feature-gates=${this.#opts.featureGates}`] : []),
      "--v=2",
    ];
  }

  async start(timeoutMs = 90_000): Promise<void> {
    if (this.#args.length === 0) await this.#prepare();
    const startedAt = new Date();
    this.#process = new Supervised("kubelet", this.#opts.binary, this.#args, {
      logFile: path.join(this.#opts.dir, "kubelet.log"),
    });
    await this.waitReady(timeoutMs, startedAt);
  }

  /**
   * Waits until the Node reports Ready and carries no `not-ready`/`unreachable` taint — and, after a
   * restart, until this kubelet process has renewed the node's Lease (a Node stays Ready in the API
   * for a while after its kubelet is gone).
   */
  async waitReady(timeoutMs = 90_000, since?: Date): Promise<void> {
    const proc = this.#process;
    await waitFor(
      async () => {
        if (since) {
          const lease = await this.#opts.cluster.request<{ spec?: { renewTime?: string } }>(
            "GET",
            `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${encodeURIComponent(this.name)}`,
          );
          const renewed = lease.status === 200 ? Date.parse(lease.body.spec?.renewTime ?? "") : NaN;
          if (!(renewed >= since.getTime() - 1_000)) return false;
        }
        const r = await this.#opts.cluster.request<NodeObject>("GET", `/api/v1/nodes/${encodeURIComponent(this.name)}`);
        if (r.status !== 200) return false;
        const ready = r.body.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
        const tainted = (r.body.spec?.taints ?? []).some((t) => t.key.startsWith("node.kubernetes.io/"));
        return ready && !tainted;
      },
      {
        what: `node ${this.name} to be Ready`,
        timeoutMs,
        intervalMs: 250,
        processes: proc ? [proc] : [],
        describe: async () => {
          const r = await this.#opts.cluster.request<NodeObject>(
            "GET",
            `/api/v1/nodes/${encodeURIComponent(this.name)}`,
          );
          return `node: ${JSON.stringify({ taints: r.body?.spec?.taints, conditions: r.body?.status?.conditions })}; kubelet log:\n${proc?.tail(15) ?? ""}`;
        },
      },
    );
  }

  /** SIGTERM: the kubelet stops; its pods' containers keep running (as on a real node). */
  async stop(): Promise<void> {
    await this.#process?.stop();
    this.#process = undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}
