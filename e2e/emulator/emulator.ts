// The node emulator: the kubelet (and the scheduler's binding step) this control plane lacks.
// It registers Node objects and keeps them Ready (status heartbeats and kube-node-lease Leases),
// binds pending pods of its namespaces to its nodes through the `pods/binding` subresource, and
// runs each bound pod with a PodRunner: real local processes, honest pod status, graceful
// deletion. Images come from a simulated Registry that tests can push to.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Pod } from "@digest-migrations/shared";
import { ApiError, paths } from "../kit/client.ts";
import type { KubeClient } from "../kit/client.ts";
import { ListWatch } from "../kit/reflector.ts";
import { NodeImages, parseImage } from "./registry.ts";
import type { Registry } from "./registry.ts";
import { PodRunner } from "./pod-runner.ts";
import type { PullRecord, StartRecord, Timing } from "./pod-runner.ts";
import type { EnvSources } from "./env.ts";
import { errorText } from "../kit/wait.ts";

export type { PullRecord, StartRecord, Timing } from "./pod-runner.ts";

export interface NodeSpec {
  name: string;
  labels?: Record<string, string>;
}

export interface NodeEmulatorOptions {
  client: KubeClient;
  registry: Registry;
  /** Namespaces whose pods this emulator binds and runs ("all" for every namespace). */
  namespaces: string[] | "all";
  /** Nodes to register (default one node, "node-1"). Names must be unique on a shared cluster. */
  nodes?: (string | NodeSpec)[];
  /** Working directory for image files and container logs (default: a new temp directory, removed on stop). */
  workDir?: string;
  timing?: Partial<Timing>;
  /** Node status / Lease heartbeat interval (default 10 s; the node lifecycle controller allows 40 s). */
  heartbeatMs?: number;
  log?: (msg: string) => void;
}

export interface EmulatedNode {
  name: string;
  labels: Record<string, string>;
  hostIP: string;
  images: NodeImages;
}

const DEFAULT_TIMING: Timing = {
  pullBackoffMs: 500,
  pullBackoffMaxMs: 5_000,
  restartBackoffMs: 500,
  restartBackoffMaxMs: 10_000,
};

export class NodeEmulator {
  readonly client: KubeClient;
  readonly registry: Registry;
  readonly workDir: string;
  readonly nodes: EmulatedNode[] = [];
  /** Every pull attempt, in order. */
  readonly pulls: PullRecord[] = [];
  /** Every container start attempt, in order (ok: false = StartError). */
  readonly starts: StartRecord[] = [];
  readonly #opts: NodeEmulatorOptions;
  readonly #ownsWorkDir: boolean;
  readonly #timing: Timing;
  readonly #watches: ListWatch<Pod>[] = [];
  readonly #runners = new Map<string, PodRunner>(); // uid → runner
  readonly #finished = new Map<string, PodRunner>(); // ns/name → last runner, for logs after deletion
  readonly #binding = new Set<string>();
  readonly #ipBase = 10 + Math.floor(Math.random() * 240);
  #podCounter = 0;
  #heartbeat: NodeJS.Timeout | undefined;
  #stopped = false;

  private constructor(opts: NodeEmulatorOptions) {
    this.#opts = opts;
    this.client = opts.client;
    this.registry = opts.registry;
    this.#ownsWorkDir = !opts.workDir;
    this.workDir = opts.workDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "dm-node-"));
    this.#timing = { ...DEFAULT_TIMING, ...opts.timing };
  }

  /** Registers the nodes, starts the watches and resolves once the first lists are processed. */
  static async start(opts: NodeEmulatorOptions): Promise<NodeEmulator> {
    const emulator = new NodeEmulator(opts);
    try {
      for (const node of opts.nodes ?? ["node-1"]) await emulator.addNode(node);
      emulator.#heartbeat = setInterval(() => void emulator.#beat(), opts.heartbeatMs ?? 10_000);
      const namespaces = opts.namespaces === "all" ? [undefined] : opts.namespaces;
      for (const ns of namespaces) {
        const watch = new ListWatch<Pod>(
          opts.client,
          ns ? paths.pods(ns) : "/api/v1/pods",
          { upsert: (pod) => emulator.#onPod(pod), remove: (pod) => emulator.#onPodGone(pod) },
          { log: (m) => emulator.#log(m) },
        );
        emulator.#watches.push(watch);
      }
      await Promise.all(emulator.#watches.map((w) => w.start()));
      return emulator;
    } catch (err) {
      await emulator.stop();
      throw err;
    }
  }

  /** Registers (or takes over) a Node object and marks it Ready. */
  async addNode(spec: string | NodeSpec): Promise<EmulatedNode> {
    const { name, labels = {} } = typeof spec === "string" ? { name: spec } : spec;
    const node: EmulatedNode = {
      name,
      labels: { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", ...labels },
      hostIP: `127.${this.#ipBase}.0.${this.nodes.length + 1}`,
      images: new NodeImages(this.registry),
    };
    const body = { apiVersion: "v1", kind: "Node", metadata: { name, labels: node.labels }, spec: {} };
    try {
      await this.client.create(paths.nodes(), body);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 409))
        throw new Error(`registering node ${name}: ${errorText(err)}`, { cause: err });
      await this.client.mergePatch(paths.node(name), { metadata: { labels: node.labels } });
    }
    this.nodes.push(node);
    await this.#writeNodeStatus(node);
    await this.#untaintReady(node);
    return node;
  }

  /**
   * The API server's TaintNodesByCondition admission gives a new Node `node.kubernetes.io/not-ready:NoSchedule`;
   * the node lifecycle controller (not run here: it would evict the emulator's pods) removes it once the
   * node reports Ready. Without that, the DaemonSet controller would place no pod on the node.
   */
  async #untaintReady(node: EmulatedNode): Promise<void> {
    const current = await this.client.get<{ spec?: { taints?: { key: string; effect: string }[] } }>(
      paths.node(node.name),
    );
    const taints = current.spec?.taints ?? [];
    const kept = taints.filter((taint) => taint.key !== "node.kubernetes.io/not-ready");
    if (kept.length !== taints.length) await this.client.mergePatch(paths.node(node.name), { spec: { taints: kept } });
  }

  node(name: string): EmulatedNode {
    const node = this.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no emulated node named ${name}`);
    return node;
  }

  /** Container log of `pod`'s `container` (latest attempt unless `attempt` is given); "" if none. */
  logs(namespace: string, pod: string, container: string, attempt?: number): string {
    const runner = this.#runnerByName(namespace, pod);
    if (!runner) return "";
    const n = attempt ?? runner.restartCount(container) ?? 0;
    try {
      return fs.readFileSync(runner.logFile(container, n), "utf8");
    } catch {
      return "";
    }
  }

  /** Pull attempts matching every given field (image matched by normalised repository when no tag/digest). */
  pullCount(filter: { node?: string; image?: string; repository?: string; pulledOnly?: boolean } = {}): number {
    const repo = filter.repository ? parseImage(filter.repository).repository : undefined;
    return this.pulls.filter(
      (p) =>
        (!filter.node || p.node === filter.node) &&
        (!filter.image || p.image === filter.image) &&
        (!repo || safeRepository(p.image) === repo) &&
        (!filter.pulledOnly || p.pulled),
    ).length;
  }

  /** Container starts matching every given field. */
  startsMatching(
    filter: Partial<Pick<StartRecord, "digest" | "command" | "container" | "pod" | "node" | "ok">>,
  ): StartRecord[] {
    return this.starts.filter((s) =>
      Object.entries(filter).every(([k, v]) => v === undefined || s[k as keyof StartRecord] === v),
    );
  }

  /** Drops every watch connection, as a network failure would; the watches resume on their own. */
  disconnectWatches(): void {
    for (const w of this.#watches) w.disconnect();
  }

  /** How many times the watches listed (1 each after start; more after relists). */
  get lists(): number {
    return this.#watches.reduce((n, w) => n + w.lists, 0);
  }

  /**
   * Stops the watches and heartbeats and kills every process started (without writing to the API).
   * `deleteNodes` (default true) removes the Node objects so nothing else is bound to them.
   */
  async stop(opts: { deleteNodes?: boolean } = {}): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#heartbeat);
    await Promise.all(this.#watches.map((w) => w.stop()));
    await Promise.all([...this.#runners.values()].map((r) => r.shutdown()));
    this.#runners.clear();
    if (opts.deleteNodes ?? true) {
      await Promise.all(
        this.nodes.map((n) =>
          this.client
            .delete(paths.node(n.name))
            .catch((err: unknown) => this.#log(`deleting node ${n.name}: ${errorText(err)}`)),
        ),
      );
    }
    if (this.#ownsWorkDir && !process.env.DM_KEEP_NODE_DIR) fs.rmSync(this.workDir, { recursive: true, force: true });
  }

  // ---- pods --------------------------------------------------------------------------------

  #onPod(pod: Pod): void {
    if (this.#stopped) return;
    const uid = pod.metadata.uid ?? "";
    const nodeName = pod.spec.nodeName;
    if (!nodeName) {
      if (!pod.metadata.deletionTimestamp) void this.#bind(pod);
      return;
    }
    const node = this.nodes.find((n) => n.name === nodeName);
    if (!node) return; // another node's pod
    const existing = this.#runners.get(uid);
    if (existing) {
      existing.update(pod);
      return;
    }
    const runner = new PodRunner(pod, {
      client: this.client,
      node,
      podIP: this.#nextPodIP(),
      workDir: this.workDir,
      timing: this.#timing,
      env: this.#envSources(),
      recordPull: (r) => this.pulls.push(r),
      recordStart: (r) => this.starts.push(r),
      log: (m) => this.#log(m),
      finished: () => this.#runners.delete(uid),
    });
    this.#runners.set(uid, runner);
    this.#finished.set(`${runner.namespace}/${runner.name}`, runner);
    if (pod.metadata.deletionTimestamp) runner.update(pod);
    else runner.start();
  }

  #onPodGone(pod: Pod): void {
    this.#runners.get(pod.metadata.uid ?? "")?.kill();
  }

  #runnerByName(namespace: string, name: string): PodRunner | undefined {
    for (const r of this.#runners.values()) if (r.namespace === namespace && r.name === name) return r;
    return this.#finished.get(`${namespace}/${name}`);
  }

  /**
   * The scheduler's last step: pick a node whose labels satisfy `spec.nodeSelector` (fewest pods
   * first, then name) and POST a Binding. Affinity, taints and resources are not modelled.
   */
  async #bind(pod: Pod): Promise<void> {
    const uid = pod.metadata.uid ?? "";
    if (this.#binding.has(uid)) return;
    const selector = (pod.spec.nodeSelector ?? {}) as Record<string, string>;
    const candidates = this.nodes.filter((n) => Object.entries(selector).every(([k, v]) => n.labels[k] === v));
    if (candidates.length === 0) return; // stays Pending, as unschedulable pods do
    const load = (n: EmulatedNode): number =>
      [...this.#runners.values()].filter((r) => r.pod.spec.nodeName === n.name).length;
    candidates.sort((a, b) => load(a) - load(b) || a.name.localeCompare(b.name));
    const target = candidates[0] as EmulatedNode;
    this.#binding.add(uid);
    const ns = pod.metadata.namespace ?? "default";
    try {
      await this.client.create(paths.podBinding(ns, pod.metadata.name ?? ""), {
        apiVersion: "v1",
        kind: "Binding",
        metadata: { name: pod.metadata.name, namespace: ns, uid },
        target: { apiVersion: "v1", kind: "Node", name: target.name },
      });
    } catch (err) {
      // 409: already bound; 404: deleted meanwhile. Anything else: the next event or relist retries.
      if (!(err instanceof ApiError && (err.status === 409 || err.status === 404))) {
        this.#log(`binding pod ${ns}/${pod.metadata.name} to ${target.name}: ${errorText(err)}`);
        this.#binding.delete(uid);
        setTimeout(() => {
          if (!this.#stopped) void this.#bind(pod);
        }, 500);
      }
    }
  }

  #nextPodIP(): string {
    this.#podCounter++;
    return `127.${this.#ipBase}.${1 + (this.#podCounter >> 8)}.${this.#podCounter & 255}`;
  }

  #envSources(): EnvSources {
    const read = async (p: string, base64: boolean): Promise<Record<string, string> | undefined> => {
      const obj = await this.client.find<{ data?: Record<string, string> }>(p);
      if (!obj) return undefined;
      const data = obj.data ?? {};
      return base64
        ? Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]))
        : data;
    };
    return {
      secret: (ns, name) => read(paths.secret(ns, name), true),
      configMap: (ns, name) => read(paths.configMap(ns, name), false),
    };
  }

  // ---- node heartbeats -----------------------------------------------------------------------

  async #beat(): Promise<void> {
    for (const node of this.nodes) {
      if (this.#stopped) return;
      try {
        await this.#writeNodeStatus(node);
        await this.#renewLease(node);
      } catch (err) {
        this.#log(`heartbeat of node ${node.name}: ${errorText(err)}`);
      }
    }
  }

  async #writeNodeStatus(node: EmulatedNode): Promise<void> {
    const now = new Date().toISOString();
    const condition = (type: string, status: string, reason: string, message: string): Record<string, string> => ({
      type,
      status,
      reason,
      message,
      lastHeartbeatTime: now,
      lastTransitionTime: this.#startedAt,
    });
    const resources = { cpu: "8", memory: "16Gi", pods: "110", "ephemeral-storage": "100Gi" };
    await this.client.mergePatch(paths.nodeStatus(node.name), {
      status: {
        capacity: resources,
        allocatable: resources,
        conditions: [
          condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
          condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
          condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
          condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        addresses: [
          { type: "InternalIP", address: node.hostIP },
          { type: "Hostname", address: node.name },
        ],
        daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
        nodeInfo: {
          machineID: "",
          systemUUID: "",
          bootID: "",
          kernelVersion: os.release(),
          osImage: "digest-migrations node emulator",
          containerRuntimeVersion: "containerd://1.4.13",
          kubeletVersion: "v1.20.2",
          kubeProxyVersion: "v1.20.2",
          operatingSystem: "linux",
          architecture: "amd64",
        },
      },
    });
  }

  readonly #startedAt = new Date().toISOString();

  async #renewLease(node: EmulatedNode): Promise<void> {
    const ns = "kube-node-lease";
    const renewTime = new Date().toISOString().replace("Z", "000Z"); // MicroTime
    try {
      await this.client.mergePatch(paths.lease(ns, node.name), { spec: { renewTime, holderIdentity: node.name } });
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
      await this.client.create(paths.leases(ns), {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name: node.name, namespace: ns },
        spec: { holderIdentity: node.name, leaseDurationSeconds: 40, renewTime },
      });
    }
  }

  #log(msg: string): void {
    if (!this.#stopped) this.#opts.log?.(`node-emulator: ${msg}`);
  }
}

function safeRepository(image: string): string | undefined {
  try {
    return parseImage(image).repository;
  } catch {
    return undefined;
  }
}
