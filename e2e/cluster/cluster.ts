// A real Kubernetes control plane for the end-to-end tests: etcd (Debian's etcd-server),
// kube-apiserver, kube-controller-manager and, when asked, kube-scheduler 1.20.2 (built once per
// machine by build.sh), all on loopback with free ports and private TLS material in a temporary
// directory.
//
//   const cluster = await startCluster({ log: console.log });
//   ... cluster.server, cluster.adminKubeconfig, await cluster.kubeconfigFor("ns", "sa") ...
//   await cluster.stop();
//
// Two uses: the shared cluster of a test run, with the scheduler and a real node (e2e/node) whose
// kubelet authenticates with a certificate from `cluster.ca` and is authorised by the Node
// authorizer and RBAC, as in a kubeadm cluster; and private, kubelet-less clusters for tests of the
// API server's own behaviour (restarts, compaction) that must not disturb anybody else.
// Deployment/ReplicaSet/StatefulSet/DaemonSet/Job/CronJob controllers, the garbage collector,
// namespace deletion and service-account tokens are real.
//
// Only Node built-ins and e2e/kit are used, so this module works in any package.
// Environment: DM_CACHE_DIR (binary cache, see build.sh), DM_CLUSTER_TMPDIR (parent of the
// cluster directory, default os.tmpdir()), DM_KEEP_CLUSTER=1 (keep the directory and its
// logs after stop()), DM_ETCD (etcd binary, default `etcd` on PATH or /usr/bin/etcd).
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createCa, issue, serviceAccountKeys, writeCertKubeconfig, kubeconfigText } from "../kit/pki.ts";
import type { Ca, KeyPair } from "../kit/pki.ts";
import { freePorts } from "../kit/ports.ts";
import {
  Supervised,
  execFileText,
  isExecutable,
  onExitSync,
  runStreaming,
  startReaper,
  writePids,
} from "../kit/processes.ts";
import { waitFor } from "../kit/wait.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
export const buildScript = path.join(here, "build.sh");
export const kubernetesVersion = "v1.20.2";

/** The controllers of a kubelet-less cluster. No nodelifecycle (there are no kubelets, so it would
 *  taint Node objects and evict their pods), no podgc (it deletes pods bound to nodes it considers
 *  gone), nothing that needs a cloud, volumes or Services. */
export const defaultControllers = [
  "deployment",
  "replicaset",
  "statefulset",
  "daemonset",
  "job",
  "cronjob",
  "garbagecollector",
  "namespace",
  "serviceaccount",
  "serviceaccount-token",
  "root-ca-cert-publisher",
  "clusterrole-aggregation",
];

/** With a real kubelet: the node lifecycle controller (it lifts the `not-ready` taint once the
 *  kubelet reports Ready, and marks pods of a node that stops reporting) and pod GC as well. */
export const nodeControllers = [...defaultControllers, "nodelifecycle", "podgc"];

export interface StartOptions {
  /** progress lines (build output, phases, timings); default: none */
  log?: (line: string) => void;
  /** kube-controller-manager --controllers; default {@link defaultControllers} */
  controllers?: string[];
  /** also run kube-scheduler (a cluster with a real node) */
  scheduler?: boolean;
  /** extra kube-apiserver flags, e.g. ["--feature-gates=..."] */
  apiserverArgs?: string[];
  /** extra kube-controller-manager flags */
  controllerManagerArgs?: string[];
  /** overall start-up deadline in ms (excluding a first-time build); default 90 s */
  timeoutMs?: number;
  /** the cluster directory's parent (default DM_CLUSTER_TMPDIR or the system's temporary directory) */
  parentDir?: string;
}

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
}

export interface Cluster {
  /** https://127.0.0.1:<port> */
  server: string;
  /** kubeconfig authenticating as a cluster admin (group system:masters), context "admin" */
  adminKubeconfig: string;
  /** the CA that signs every serving and client certificate of this cluster */
  ca: Ca;
  /** creates (if missing) the namespace and the ServiceAccount, waits for its token Secret,
   *  and returns the path of a kubeconfig that authenticates as that ServiceAccount */
  kubeconfigFor(namespace: string, serviceAccount: string): Promise<string>;
  /** creates (if missing) a namespace and waits until pods can be created in it (the
   *  ServiceAccount admission plugin rejects pods until the default SA has a token) */
  ensureNamespace(namespace: string): Promise<void>;
  /** a JSON request as the admin; `body` objects are sent as JSON. Never throws on HTTP status. */
  request<T = unknown>(method: string, apiPath: string, body?: unknown, contentType?: string): Promise<ApiResponse<T>>;
  /** PEM file of the cluster CA (serving cert and client certs) */
  caFile: string;
  /** PEM file of the private key the API server signs service-account tokens with */
  serviceAccountKeyFile: string;
  /** admin client certificate and key (PEM files) */
  adminCertFile: string;
  adminKeyFile: string;
  /** http://127.0.0.1:<port> of etcd */
  etcdEndpoint: string;
  /** stops only kube-apiserver (for fault tests); the port stays reserved for startApiserver() */
  stopApiserver(): Promise<void>;
  /** starts kube-apiserver again on the same port and waits for /readyz */
  startApiserver(): Promise<void>;
  /** stops everything this cluster started and removes its directory (unless DM_KEEP_CLUSTER=1) */
  stop(): Promise<void>;
  /** the cluster's temporary directory (certificates, kubeconfigs, etcd data, logs *.log) */
  dir: string;
}

// ---------------------------------------------------------------------------------------------
// binaries

export interface Binaries {
  binDir: string;
  kubeApiserver: string;
  kubeControllerManager: string;
  kubeScheduler: string;
  kubelet: string;
  /** the static pause binary of the pod sandbox image */
  pause: string;
  etcd: string;
}

/** Runs build.sh (seconds when the binaries are cached; a first build takes ~13 min and streams
 *  its progress lines to `log`) and returns the binaries' paths. */
export async function ensureBinaries(log: (line: string) => void = () => {}): Promise<Binaries> {
  await runStreaming("bash", [buildScript], log);
  const binDir = (await execFileText("bash", [buildScript, "--print-bin-dir"])).trim();
  const bins = {
    binDir,
    kubeApiserver: path.join(binDir, "kube-apiserver"),
    kubeControllerManager: path.join(binDir, "kube-controller-manager"),
    kubeScheduler: path.join(binDir, "kube-scheduler"),
    kubelet: path.join(binDir, "kubelet"),
    pause: path.join(binDir, "pause"),
    etcd: findEtcd(),
  };
  for (const f of [bins.kubeApiserver, bins.kubeControllerManager, bins.kubeScheduler, bins.kubelet, bins.pause]) {
    if (!isExecutable(f)) throw new Error(`${f} missing after ${buildScript}`);
  }
  return bins;
}

function findEtcd(): string {
  const candidates = [
    process.env.DM_ETCD,
    ...(process.env.PATH ?? "").split(":").map((d) => d && path.join(d, "etcd")),
    "/usr/bin/etcd",
  ];
  for (const c of candidates) if (c && isExecutable(c)) return c;
  throw new Error("etcd not found (Debian: apt-get install etcd-server; or set DM_ETCD)");
}

// ---------------------------------------------------------------------------------------------
// HTTP (node:http rather than fetch(): undici's pooled sockets would keep the process alive)

function httpGetText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 5_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: timeout`)));
    req.on("error", reject);
  });
}

interface TlsClient {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  insecure?: boolean;
}

function httpsRequest(
  url: string,
  method: string,
  tls: TlsClient,
  body?: string,
  contentType = "application/json",
  agent?: https.Agent,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) {
      headers["content-type"] = contentType;
      headers["content-length"] = String(Buffer.byteLength(body));
    }
    const req = https.request(
      url,
      {
        method,
        headers,
        agent: agent ?? false,
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        rejectUnauthorized: !tls.insecure,
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${url}: timeout`)));
    req.on("error", reject);
    req.end(body);
  });
}

// ---------------------------------------------------------------------------------------------
// the cluster

interface Ports {
  etcdClient: number;
  etcdPeer: number;
  apiserver: number;
  controllerManager: number;
  scheduler: number;
}

interface Pki {
  ca: Ca;
  server: KeyPair;
  admin: KeyPair;
  controllerManager: KeyPair;
  scheduler: KeyPair;
  saKey: string;
  saPub: string;
}

async function makePki(dir: string): Promise<Pki> {
  const ca = await createCa(dir, "digest-migrations-e2e-ca");
  const { key: saKey, pub: saPub } = serviceAccountKeys(dir);
  const [server, admin, controllerManager, scheduler] = await Promise.all([
    issue(ca, {
      name: "apiserver",
      commonName: "kube-apiserver",
      serving: {
        ips: ["127.0.0.1", "10.0.0.1"],
        dnsNames: [
          "localhost",
          "kubernetes",
          "kubernetes.default",
          "kubernetes.default.svc",
          "kubernetes.default.svc.cluster.local",
        ],
      },
    }),
    // system:masters: full access without RBAC objects (also the apiserver's client certificate
    // towards kubelets: logs, exec).
    issue(ca, { name: "admin", commonName: "digest-migrations-e2e-admin", organizations: ["system:masters"] }),
    // With --use-service-account-credentials=false every controller acts as the controller-manager
    // itself, so it needs all their permissions: give it system:masters too.
    issue(ca, {
      name: "controller-manager",
      commonName: "system:kube-controller-manager",
      organizations: ["system:masters"],
    }),
    // The scheduler's user, bound by the bootstrap policy to the system:kube-scheduler ClusterRole.
    issue(ca, { name: "scheduler", commonName: "system:kube-scheduler" }),
  ]);
  return { ca, server, admin, controllerManager, scheduler, saKey, saPub };
}

class ClusterImpl implements Cluster {
  readonly dir: string;
  server = "";
  adminKubeconfig = "";
  etcdEndpoint = "";

  private readonly bins: Binaries;
  private readonly opts: StartOptions;
  private readonly log: (line: string) => void;
  private pki!: Pki;
  private ports!: Ports;
  private etcd: Supervised | undefined;
  private apiserver: Supervised | undefined;
  private controllerManager: Supervised | undefined;
  private scheduler: Supervised | undefined;
  private agent: https.Agent | undefined;
  private tlsAdmin: TlsClient = {};
  private stopped = false;
  private readonly forgetExitHook: () => void;

  constructor(dir: string, bins: Binaries, opts: StartOptions) {
    this.dir = dir;
    this.bins = bins;
    this.opts = opts;
    this.log = opts.log ?? (() => {});
    this.forgetExitHook = onExitSync(() => this.killNowSync());
  }

  get ca(): Ca {
    return this.pki.ca;
  }
  get caFile(): string {
    return this.pki.ca.cert;
  }
  get serviceAccountKeyFile(): string {
    return this.pki.saKey;
  }
  get adminCertFile(): string {
    return this.pki.admin.cert;
  }
  get adminKeyFile(): string {
    return this.pki.admin.key;
  }

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  private get processes(): Supervised[] {
    return [this.etcd, this.apiserver, this.controllerManager, this.scheduler].filter(
      (p): p is Supervised => p !== undefined,
    );
  }

  async start(): Promise<void> {
    const t0 = Date.now();
    const deadline = t0 + (this.opts.timeoutMs ?? 90_000);
    const phase = (what: string): void => this.log(`[cluster +${((Date.now() - t0) / 1000).toFixed(1)}s] ${what}`);

    startReaper(this.dir);
    phase("generating certificates and keys");
    this.pki = await makePki(this.dir);
    this.tlsAdmin = {
      ca: fs.readFileSync(this.pki.ca.cert),
      cert: fs.readFileSync(this.pki.admin.cert),
      key: fs.readFileSync(this.pki.admin.key),
    };
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 16, ...this.tlsAdmin });

    for (let attempt = 1; ; attempt++) {
      const [etcdClient, etcdPeer, apiserver, controllerManager, scheduler] = await freePorts(5);
      this.ports = {
        etcdClient: etcdClient!,
        etcdPeer: etcdPeer!,
        apiserver: apiserver!,
        controllerManager: controllerManager!,
        scheduler: scheduler!,
      };
      try {
        await this.startAll(deadline, phase);
        break;
      } catch (err) {
        const inUse = this.processes.some((p) => p.exited && p.addressInUse());
        await this.stopProcesses();
        if (!inUse || attempt >= 3) throw err;
        phase(`a port was taken by another process; retrying with new ports (attempt ${attempt + 1})`);
      }
    }
    phase(`ready: ${this.server} (dir ${this.dir})`);
  }

  private async startAll(deadline: number, phase: (what: string) => void): Promise<void> {
    const { ports, pki } = this;
    this.server = `https://127.0.0.1:${ports.apiserver}`;
    this.etcdEndpoint = `http://127.0.0.1:${ports.etcdClient}`;
    const timeoutMs = (): number => Math.max(1, deadline - Date.now());

    this.adminKubeconfig = writeCertKubeconfig(this.file("admin.kubeconfig"), this.server, pki.ca, "admin", pki.admin);
    const cmKubeconfig = writeCertKubeconfig(
      this.file("controller-manager.kubeconfig"),
      this.server,
      pki.ca,
      "system:kube-controller-manager",
      pki.controllerManager,
    );

    phase(`starting etcd on ${this.etcdEndpoint}`);
    const peer = `http://127.0.0.1:${ports.etcdPeer}`;
    this.etcd = this.spawn("etcd", this.bins.etcd, [
      "--name=dm-e2e",
      `--data-dir=${this.file("etcd")}`,
      `--listen-client-urls=${this.etcdEndpoint}`,
      `--advertise-client-urls=${this.etcdEndpoint}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=dm-e2e=${peer}`,
      "--initial-cluster-state=new",
      `--initial-cluster-token=dm-e2e-${path.basename(this.dir)}`,
      "--logger=zap",
      "--log-outputs=stderr",
      "--log-level=warn",
    ]);
    await waitFor(
      async () =>
        (JSON.parse(await httpGetText(`${this.etcdEndpoint}/health`)) as { health?: string }).health === "true",
      { what: "etcd /health", timeoutMs: timeoutMs(), intervalMs: 50, processes: [this.etcd] },
    );

    phase(`starting kube-apiserver on ${this.server}`);
    await this.launchApiserver(timeoutMs());

    phase(`starting kube-controller-manager (health on https://127.0.0.1:${ports.controllerManager})`);
    this.controllerManager = this.spawn("kube-controller-manager", this.bins.kubeControllerManager, [
      `--kubeconfig=${cmKubeconfig}`,
      `--authentication-kubeconfig=${cmKubeconfig}`,
      `--authorization-kubeconfig=${cmKubeconfig}`,
      "--bind-address=127.0.0.1",
      `--secure-port=${ports.controllerManager}`,
      "--port=0", // 1.20 still serves an insecure port (10252) unless disabled
      `--cert-dir=${this.file("controller-manager-certs")}`,
      "--leader-elect=false",
      `--controllers=${(this.opts.controllers ?? defaultControllers).join(",")}`,
      "--use-service-account-credentials=false",
      `--service-account-private-key-file=${pki.saKey}`,
      `--root-ca-file=${pki.ca.cert}`,
      "--cluster-name=digest-migrations-e2e",
      "--profiling=false",
      "--v=1",
      ...(this.opts.controllerManagerArgs ?? []),
    ]);
    const healthy = (port: number) => async (): Promise<boolean> =>
      (await httpsRequest(`https://127.0.0.1:${port}/healthz`, "GET", { insecure: true })).status === 200;
    await waitFor(healthy(ports.controllerManager), {
      what: "kube-controller-manager /healthz",
      timeoutMs: timeoutMs(),
      intervalMs: 50,
      processes: this.processes,
    });

    if (this.opts.scheduler) {
      phase(`starting kube-scheduler (health on https://127.0.0.1:${ports.scheduler})`);
      const schedulerKubeconfig = writeCertKubeconfig(
        this.file("scheduler.kubeconfig"),
        this.server,
        pki.ca,
        "system:kube-scheduler",
        pki.scheduler,
      );
      this.scheduler = this.spawn("kube-scheduler", this.bins.kubeScheduler, [
        `--kubeconfig=${schedulerKubeconfig}`,
        `--authentication-kubeconfig=${schedulerKubeconfig}`,
        `--authorization-kubeconfig=${schedulerKubeconfig}`,
        "--bind-address=127.0.0.1",
        `--secure-port=${ports.scheduler}`,
        "--port=0",
        `--cert-dir=${this.file("scheduler-certs")}`,
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
      ]);
      await waitFor(healthy(ports.scheduler), {
        what: "kube-scheduler /healthz",
        timeoutMs: timeoutMs(),
        intervalMs: 50,
        processes: this.processes,
      });
    }
    // The token controller is the last piece pods need (ServiceAccount admission): wait until
    // the default namespace is usable, which also proves the controllers run.
    phase("waiting for the default ServiceAccount token (token controller)");
    await this.waitForServiceAccountToken("default", "default", timeoutMs());
  }

  private spawn(name: string, cmd: string, args: string[]): Supervised {
    const p = new Supervised(name, cmd, args, { logFile: this.file(`${name}.log`), cwd: this.dir });
    writePids(this.dir, this.processes.concat(p));
    return p;
  }

  private apiserverArgs(): string[] {
    const { pki, ports } = this;
    return [
      `--etcd-servers=${this.etcdEndpoint}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${ports.apiserver}`,
      "--insecure-port=0", // 1.20 default is 8080 on localhost: shared between parallel runs
      `--cert-dir=${this.file("apiserver-certs")}`,
      `--tls-cert-file=${pki.server.cert}`,
      `--tls-private-key-file=${pki.server.key}`,
      `--client-ca-file=${pki.ca.cert}`,
      // As kubeadm sets it up: kubelets are authorised by the Node authorizer (and limited to their
      // own Node and pods by NodeRestriction), everybody else by RBAC.
      "--authorization-mode=Node,RBAC",
      // The apiserver reaches a kubelet (logs, exec) at the Node's InternalIP (127.0.0.1) with the
      // admin certificate, and checks the kubelet's serving certificate against the cluster CA.
      "--kubelet-preferred-address-types=InternalIP",
      `--kubelet-client-certificate=${pki.admin.cert}`,
      `--kubelet-client-key=${pki.admin.key}`,
      `--kubelet-certificate-authority=${pki.ca.cert}`,
      // 1.20 requires the issuer and signing key (TokenRequest); the public key verifies both
      // the legacy Secret tokens (signed by the controller-manager) and bound tokens.
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-signing-key-file=${pki.saKey}`,
      `--service-account-key-file=${pki.saPub}`,
      "--service-cluster-ip-range=10.0.0.0/24",
      // The "kubernetes" Service's Endpoints may not point at loopback: do not reconcile them.
      "--endpoint-reconciler-type=none",
      // Default plugin set of 1.20 (NamespaceLifecycle, LimitRanger, ServiceAccount, Priority,
      // DefaultTolerationSeconds, ResourceQuota, webhooks, …) plus NodeRestriction, named so it
      // does not drift.
      "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,NodeRestriction,TaintNodesByCondition,DefaultTolerationSeconds,Priority,ResourceQuota,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
      "--allow-privileged=true",
      "--profiling=false",
      "--v=1",
      ...(this.opts.apiserverArgs ?? []),
    ];
  }

  private async launchApiserver(timeoutMs: number): Promise<void> {
    this.apiserver = this.spawn("kube-apiserver", this.bins.kubeApiserver, this.apiserverArgs());
    await waitFor(async () => (await httpsRequest(`${this.server}/readyz`, "GET", this.tlsAdmin)).status === 200, {
      what: "kube-apiserver /readyz",
      timeoutMs,
      intervalMs: 50,
      processes: this.processes,
    });
  }

  async request<T = unknown>(
    method: string,
    apiPath: string,
    body?: unknown,
    contentType?: string,
  ): Promise<ApiResponse<T>> {
    const text = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
    const r = await httpsRequest(`${this.server}${apiPath}`, method, this.tlsAdmin, text, contentType, this.agent);
    let parsed: unknown = r.text;
    try {
      parsed = r.text ? JSON.parse(r.text) : undefined;
    } catch {
      /* not JSON */
    }
    return { status: r.status, body: parsed as T };
  }

  private async mustRequest<T>(method: string, apiPath: string, body: unknown, ok: number[]): Promise<ApiResponse<T>> {
    const r = await this.request<T>(method, apiPath, body);
    if (!ok.includes(r.status)) throw new Error(`${method} ${apiPath}: HTTP ${r.status}: ${JSON.stringify(r.body)}`);
    return r;
  }

  async ensureNamespace(namespace: string): Promise<void> {
    await this.mustRequest(
      "POST",
      "/api/v1/namespaces",
      { apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } },
      [201, 409],
    );
    await this.waitForServiceAccountToken(namespace, "default", 60_000);
  }

  /** Waits for the legacy token Secret the 1.20 token controller creates for a ServiceAccount. */
  private async waitForServiceAccountToken(
    namespace: string,
    serviceAccount: string,
    timeoutMs: number,
  ): Promise<string> {
    const ns = encodeURIComponent(namespace);
    const sa = encodeURIComponent(serviceAccount);
    return waitFor(
      async () => {
        const r = await this.request<{ secrets?: { name?: string }[] }>(
          "GET",
          `/api/v1/namespaces/${ns}/serviceaccounts/${sa}`,
        );
        if (r.status !== 200) return undefined;
        for (const ref of r.body.secrets ?? []) {
          if (!ref.name) continue;
          const s = await this.request<{ type?: string; data?: Record<string, string> }>(
            "GET",
            `/api/v1/namespaces/${ns}/secrets/${encodeURIComponent(ref.name)}`,
          );
          const token =
            s.status === 200 && s.body.type === "kubernetes.io/service-account-token" ? s.body.data?.token : undefined;
          if (token) return Buffer.from(token, "base64").toString("utf8");
        }
        return undefined;
      },
      {
        what: `a token for ServiceAccount ${namespace}/${serviceAccount}`,
        timeoutMs,
        intervalMs: 50,
        processes: [this.apiserver, this.controllerManager].filter((p): p is Supervised => p !== undefined),
      },
    );
  }

  async kubeconfigFor(namespace: string, serviceAccount: string): Promise<string> {
    await this.mustRequest(
      "POST",
      "/api/v1/namespaces",
      { apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } },
      [201, 409],
    );
    await this.mustRequest(
      "POST",
      `/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts`,
      { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: serviceAccount } },
      [201, 409],
    );
    const token = await this.waitForServiceAccountToken(namespace, serviceAccount, 60_000);
    const user = `system:serviceaccount:${namespace}:${serviceAccount}`;
    const file = this.file(`kubeconfig-${namespace}-${serviceAccount}`.replace(/[^A-Za-z0-9._-]/g, "_"));
    // The namespace is the context's default, like an in-cluster client's.
    fs.writeFileSync(file, kubeconfigText(this.server, this.caFile, user, { token }, namespace), { mode: 0o600 });
    return file;
  }

  async stopApiserver(): Promise<void> {
    await this.apiserver?.stop();
    writePids(this.dir, this.processes);
  }

  async startApiserver(): Promise<void> {
    if (this.stopped) throw new Error("cluster stopped");
    if (this.apiserver && !this.apiserver.exited) return;
    this.agent?.destroy(); // drop keep-alive sockets to the old process
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 16, ...this.tlsAdmin });
    // Its port stays ours: nothing else on this machine listens on a port we got from the kernel
    // moments ago unless it asks for it explicitly (SO_REUSEADDR lets the new process rebind).
    await this.launchApiserver(this.opts.timeoutMs ?? 90_000);
  }

  private async stopProcesses(): Promise<void> {
    // Scheduler and controller-manager first (they would log errors without the apiserver), etcd last.
    for (const p of [this.scheduler, this.controllerManager, this.apiserver, this.etcd]) await p?.stop();
    this.scheduler = this.controllerManager = this.apiserver = this.etcd = undefined;
    writePids(this.dir, []);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      await this.stopProcesses();
    } finally {
      this.agent?.destroy();
      this.forgetExitHook();
      this.removeDir();
    }
  }

  private removeDir(): void {
    if (process.env.DM_KEEP_CLUSTER === "1") {
      this.log(`[cluster] keeping ${this.dir} (DM_KEEP_CLUSTER=1)`);
      fs.rmSync(path.join(this.dir, "pids"), { force: true });
      return;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** Synchronous last resort for process exit and fatal signals. */
  killNowSync(): void {
    for (const p of this.processes) p.killGroupSync("SIGKILL");
    this.stopped = true;
    this.removeDir();
  }
}

/** Starts etcd, kube-apiserver, kube-controller-manager (and kube-scheduler when asked), building
 *  them first if this machine has no cached binaries, and waits until they are ready. */
export async function startCluster(opts: StartOptions = {}): Promise<Cluster> {
  const log = opts.log ?? (() => {});
  const t0 = Date.now();
  const bins = await ensureBinaries(log);
  const parent = opts.parentDir ?? (process.env.DM_CLUSTER_TMPDIR || os.tmpdir());
  fs.mkdirSync(parent, { recursive: true });
  const dir = fs.mkdtempSync(path.join(parent, "dm-cluster-"));
  const cluster = new ClusterImpl(dir, bins, opts);
  try {
    await cluster.start();
  } catch (err) {
    if (process.env.DM_KEEP_CLUSTER === "1") log(`[cluster] start failed; logs in ${dir}`);
    await cluster.stop();
    throw err;
  }
  log(`[cluster] started in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  return cluster;
}
