// The reconciler installed the way docs/install.md says, with the real helm, from
// charts/digest-migrations, into a test's namespace: the image built from Dockerfile.reconciler (in
// the node's registry, pinned by digest), 2 replicas with leader election, the chart's RBAC,
// probes, securityContext and NODE_OPTIONS, running as pods on the real node.
//
// What differs from a production cluster, through documented chart values only:
// - hostNetwork: true — there is no kube-proxy (no ClusterIP Services) and the API server listens
//   on the node's loopback, so the replicas run in the node's network namespace, share their ports
//   (--reuse-port) and are reached at http://127.0.0.1:<port>; gated pods use hostNetwork too;
// - extraEnv KUBERNETES_SERVICE_HOST/PORT — the in-cluster client's API server address (127.0.0.1);
// - watchNamespaces: the test's namespace only, so parallel tests never see each other's Migrators;
// - shorter leader-election timings (extraArgs), so failover tests take seconds.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { KubeObject, Pod } from "@digest-migrations/shared";
import { tools } from "../../plugin/test/tools.ts";
import type { KubeClient, ObjectList } from "../kit/client.ts";
import { freePorts } from "../kit/ports.ts";
import { execFileText } from "../kit/processes.ts";
import { waitFor } from "../kit/wait.ts";
import { repoRoot } from "../node/images.ts";
import { serverSideApply, waitEstablished } from "../pipeline/apply.ts";
import { readManifests } from "../pipeline/install.ts";
import type { WorldInfo } from "./world.ts";

export const CHART_DIR = path.join(repoRoot, "charts/digest-migrations");

export interface ReleaseOptions {
  replicas?: number;
  logLevel?: string;
  /** more reconciler flags */
  extraArgs?: string[];
  /** more chart values (merged over the test's) */
  values?: Record<string, unknown>;
}

/** The chart's CRDs (crds/), applied and established: the Migrator kind without a reconciler. */
export async function applyChartCrds(kube: KubeClient): Promise<void> {
  for (const crd of readManifests(path.join(CHART_DIR, "crds/crd.yaml"))) {
    await serverSideApply(kube, crd);
    await waitEstablished(kube, crd.metadata.name ?? "");
  }
}

export class ReconcilerRelease {
  readonly namespace: string;
  /** the Helm release */
  readonly name: string;
  /** the chart's fullname: the Deployment is <fullname>-reconciler, and so is the leader Lease */
  readonly fullname: string;
  readonly waiterPort: number;
  readonly metricsPort: number;
  readonly #kube: KubeClient;
  readonly #world: WorldInfo;

  private constructor(world: WorldInfo, kube: KubeClient, namespace: string, name: string, ports: number[]) {
    this.#world = world;
    this.#kube = kube;
    this.namespace = namespace;
    this.name = name;
    this.fullname = `dm-${namespace}`.slice(0, 50).replace(/-+$/, "");
    this.waiterPort = ports[0] ?? 0;
    this.metricsPort = ports[1] ?? 0;
  }

  /** What waiters are told (the plugin's reconciler-url): the shared waiter port on the node. */
  get waiterUrl(): string {
    return `http://127.0.0.1:${this.waiterPort}`;
  }

  get metricsUrl(): string {
    return `http://127.0.0.1:${this.metricsPort}`;
  }

  /** `helm install` into `namespace` and wait until `replicas` pods are ready. */
  static async install(
    world: WorldInfo,
    kube: KubeClient,
    namespace: string,
    opts: ReleaseOptions = {},
  ): Promise<ReconcilerRelease> {
    const ports = await freePorts(2);
    const name = "digest-migrations";
    const release = new ReconcilerRelease(world, kube, namespace, name, ports);
    const [repository, digest] = world.images.reconciler.split("@");
    const apiserver = new URL(world.server);
    const values = {
      // Cluster-scoped RBAC objects are named after the release: one per test namespace.
      fullnameOverride: release.fullname,
      image: { repository: repository?.replace(/:[^/:]+$/, ""), digest, pullPolicy: "IfNotPresent" },
      replicas: opts.replicas ?? 2,
      logLevel: opts.logLevel ?? "debug",
      watchNamespaces: [namespace],
      hostNetwork: true,
      bindAddress: "127.0.0.1",
      ports: { waiter: ports[0], metrics: ports[1] },
      extraEnv: [
        { name: "KUBERNETES_SERVICE_HOST", value: apiserver.hostname },
        { name: "KUBERNETES_SERVICE_PORT", value: apiserver.port },
      ],
      extraArgs: ["--lease-duration=4", "--renew-deadline=3", "--retry-period=0.5", ...(opts.extraArgs ?? [])],
      argocd: { configMap: { enabled: false } },
      // The shipped 30 s grace would make every test's teardown wait for it.
      shutdownTimeoutSeconds: 5,
      ...opts.values,
    };
    // What `helm install` does with crds/ (create the CRD when missing), done here once per test so
    // that tests installing at the same time do not race on it.
    await applyChartCrds(kube);
    await release.#helm(["install", name, CHART_DIR, "--namespace", namespace, "--skip-crds"], values);
    await release.waitReady(opts.replicas ?? 2);
    return release;
  }

  async #helm(args: string[], values?: Record<string, unknown>): Promise<string> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dm-helm-"));
    try {
      const extra: string[] = [];
      if (values) {
        const file = path.join(dir, "values.json");
        fs.writeFileSync(file, JSON.stringify(values));
        extra.push("--values", file);
      }
      return await execFileText(tools().helm, [...args, ...extra, "--kubeconfig", this.#world.adminKubeconfig], {
        env: { ...process.env, HELM_CACHE_HOME: path.join(dir, "cache"), HELM_CONFIG_HOME: path.join(dir, "config") },
        timeoutMs: 120_000,
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  /** The reconciler's pods (label app.kubernetes.io/name). */
  async pods(): Promise<Pod[]> {
    const selector = encodeURIComponent(`app.kubernetes.io/instance=${this.name}`);
    return (
      await this.#kube.get<ObjectList<Pod>>(`/api/v1/namespaces/${this.namespace}/pods?labelSelector=${selector}`)
    ).items;
  }

  /** Waits until `replicas` reconciler pods run and are Ready, none terminating. */
  async waitReady(replicas: number, timeoutMs = 120_000): Promise<Pod[]> {
    return waitFor(
      async () => {
        const pods = (await this.pods()).filter((p) => !p.metadata.deletionTimestamp);
        const ready = pods.filter((p) => p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"));
        return ready.length === replicas && pods.length === replicas ? ready : undefined;
      },
      {
        what: `${replicas} reconciler replicas in ${this.namespace} to be Ready`,
        timeoutMs,
        intervalMs: 250,
        describe: async () => {
          const pods = await this.pods();
          return pods
            .map(
              (p) =>
                `${p.metadata.name}: ${p.status?.phase} ${JSON.stringify(p.status?.containerStatuses?.map((s) => s.state))}`,
            )
            .join("; ");
        },
      },
    );
  }

  /**
   * SIGKILLs a reconciler container through the container runtime (`ctr tasks kill`), as an OOM
   * kill or a crash would end it; the kubelet then restarts it (restartPolicy Always).
   */
  async killContainer(pod: Pod): Promise<void> {
    const name = pod.metadata.name ?? "";
    const stale = new Set<string>();
    // The pod's status may still name a container that has just exited (killed a moment ago, and the
    // kubelet not yet reporting its successor): containerd then has no task of that ID, and the kill
    // waits for the status to name the running one.
    await waitFor(
      async () => {
        const live = await this.#kube.get<Pod>(`/api/v1/namespaces/${this.namespace}/pods/${name}`);
        const status = live.status?.containerStatuses?.find((s) => s.name === "reconciler");
        const id = status?.state?.running ? status.containerID?.replace(/^containerd:\/\//, "") : undefined;
        if (!id || stale.has(id)) return false;
        try {
          await execFileText("ctr", [
            "--address",
            this.#world.node.containerdSocket,
            "--namespace",
            "k8s.io",
            "tasks",
            "kill",
            "--signal",
            "SIGKILL",
            id,
          ]);
          return true;
        } catch (error) {
          if (!/no running task found|not found/.test(String(error))) throw error;
          stale.add(id);
          return false;
        }
      },
      { what: `a running reconciler container in pod ${name} to kill`, timeoutMs: 60_000 },
    );
  }

  /** Deletes a reconciler pod (graceful: SIGTERM, the Lease released); its ReplicaSet makes another. */
  async deletePod(pod: Pod): Promise<void> {
    await this.#kube.delete(`/api/v1/namespaces/${this.namespace}/pods/${pod.metadata.name}`);
  }

  /** The running reconciler pod that holds the Lease (an identity is `<pod name>_<random>`). */
  async leaderPod(): Promise<Pod | undefined> {
    const holder = await this.leader();
    if (!holder) return undefined;
    return (await this.pods()).find((p) => holder.startsWith(`${p.metadata.name}_`) && !p.metadata.deletionTimestamp);
  }

  /** Reconciler containers the kubelet restarted (a crash, a failed liveness probe), as sentences. */
  async restarts(): Promise<string[]> {
    return (await this.pods()).flatMap((p) =>
      (p.status?.containerStatuses ?? [])
        .filter((s) => (s.restartCount ?? 0) > 0)
        .map(
          (s) =>
            `${p.metadata.name}/${s.name} restarted ${s.restartCount} time(s), last: ${JSON.stringify(s.lastState?.terminated ?? s.lastState)}`,
        ),
    );
  }

  /** The Lease holder's identity (the writing replica). */
  async leader(): Promise<string | undefined> {
    const lease = await this.#kube.find<KubeObject & { spec?: { holderIdentity?: string } }>(
      `/apis/coordination.k8s.io/v1/namespaces/${this.namespace}/leases/${this.fullname}-reconciler`,
    );
    return lease?.spec?.holderIdentity;
  }

  /** GET /metrics (any replica answers: they share the port). */
  async metrics(): Promise<string> {
    const res = await fetch(`${this.metricsUrl}/metrics`);
    return res.text();
  }

  /** Every reconciler container's log, joined (through the API server and the kubelet). */
  async logs(): Promise<string> {
    const out: string[] = [];
    for (const p of await this.pods()) {
      const text = await this.#kube
        .request<string>("GET", `/api/v1/namespaces/${this.namespace}/pods/${p.metadata.name}/log`, {
          query: { container: "reconciler" },
        })
        .catch((err: unknown) => `(no log: ${err instanceof Error ? err.message : String(err)})`);
      out.push(`--- ${p.metadata.name}\n${typeof text === "string" ? text : JSON.stringify(text)}`);
    }
    return out.join("\n");
  }

  async uninstall(): Promise<void> {
    await this.#helm(["uninstall", this.name, "--namespace", this.namespace, "--wait", "--timeout", "60s"]);
  }
}
