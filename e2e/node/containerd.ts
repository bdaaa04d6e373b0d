// containerd (Debian's 1.6) as the node's container runtime: its own root, state and socket under
// the node's directory, the CRI plugin with runc (cgroupfs driver), the CNI bridge, the pause image
// from the node's registry, and that registry reached over plain HTTP through certs.d/hosts.toml.
import fs from "node:fs";
import path from "node:path";
import { Supervised, execFileText } from "../kit/processes.ts";
import { waitFor } from "../kit/wait.ts";

export interface ContainerdOptions {
  dir: string;
  /** host:port of the node's registry (plain HTTP) */
  registry: string;
  /** the pod sandbox image, e.g. 127.0.0.1:5000/pause:3.4 */
  sandboxImage: string;
  cniConfDir: string;
  cniBinDir: string;
  log: (line: string) => void;
}

/** The Kubernetes namespace of containerd, where the CRI plugin keeps pods' containers and images. */
export const CRI_NAMESPACE = "k8s.io";

export class Containerd {
  readonly socket: string;
  readonly #opts: ContainerdOptions;
  readonly #config: string;
  #process: Supervised | undefined;

  constructor(opts: ContainerdOptions) {
    this.#opts = opts;
    this.socket = path.join(opts.dir, "containerd.sock");
    this.#config = path.join(opts.dir, "config.toml");
  }

  get process(): Supervised | undefined {
    return this.#process;
  }

  #writeConfig(): void {
    const { dir, registry, sandboxImage, cniConfDir, cniBinDir } = this.#opts;
    const certsDir = path.join(dir, "certs.d");
    fs.mkdirSync(path.join(certsDir, registry), { recursive: true });
    // The registry speaks plain HTTP on loopback (containerd's hosts.toml: server + capabilities).
    fs.writeFileSync(
      path.join(certsDir, registry, "hosts.toml"),
      `server = "http://${registry}"\n\n[host."http://${registry}"]\n  capabilities = ["pull", "resolve", "push"]\n`,
    );
    const q = JSON.stringify;
    fs.writeFileSync(
      this.#config,
      `version = 2
root = ${q(path.join(dir, "root"))}
state = ${q(path.join(dir, "state"))}

[grpc]
  address = ${q(this.socket)}

[ttrpc]
  address = ${q(`${this.socket}.ttrpc`)}

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${q(sandboxImage)}
  # Root here lacks CAP_SYS_RESOURCE: without this runc fails every container on writing oom_score_adj.
  restrict_oom_score_adj = true
  # The pods' network namespaces are bind mounts under the state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_unprivileged_ports = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${q(cniBinDir)}
    conf_dir = ${q(cniConfDir)}
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ${q(certsDir)}
`,
    );
  }

  async start(timeoutMs = 30_000): Promise<void> {
    fs.mkdirSync(this.#opts.dir, { recursive: true });
    this.#writeConfig();
    this.#process = new Supervised("containerd", "containerd", ["--config", this.#config, "--log-level", "info"], {
      logFile: path.join(this.#opts.dir, "containerd.log"),
    });
    const proc = this.#process;
    await waitFor(async () => (await this.ctr(["version"])).includes("Server:"), {
      what: `containerd on ${this.socket}`,
      timeoutMs,
      processes: [proc],
    });
  }

  /** SIGTERM (containers and their shims keep running, as on a real node). */
  async stop(): Promise<void> {
    await this.#process?.stop();
    this.#process = undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** `ctr` against this containerd, in the CRI namespace. */
  ctr(args: string[]): Promise<string> {
    return execFileText("ctr", ["--address", this.socket, "--namespace", CRI_NAMESPACE, ...args], {
      timeoutMs: 60_000,
    });
  }

  /** Every container's info (`ctr containers info`): id, image, labels (pod, namespace, container name). */
  async containers(): Promise<ContainerInfo[]> {
    const ids = (await this.ctr(["containers", "list", "--quiet"])).split("\n").filter(Boolean);
    const out: ContainerInfo[] = [];
    for (const id of ids) {
      try {
        out.push(JSON.parse(await this.ctr(["containers", "info", id])) as ContainerInfo);
      } catch {
        /* removed meanwhile */
      }
    }
    return out;
  }
}

/** What `ctr containers info` prints (the fields used here). */
export interface ContainerInfo {
  ID: string;
  /** the image reference the container was created from (the CRI plugin resolves it to a repo digest) */
  Image: string;
  Labels?: Record<string, string>;
  CreatedAt?: string;
}
