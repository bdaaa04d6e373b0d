// A real, kubelet-less Kubernetes control plane for the end-to-end tests: etcd (Debian's
// etcd-server), kube-apiserver and kube-controller-manager 1.20.2 (built once per machine by
// build.sh), all on loopback with free ports and private TLS material in a temporary directory.
//
//   const cluster = await startCluster({ log: console.log });
//   ... cluster.server, cluster.adminKubeconfig, await cluster.kubeconfigFor("ns", "sa") ...
//   await cluster.stop();
//
// Only Node built-ins are used, so this module works before `npm install` and in any package.
// There is no kubelet and no scheduler: the e2e harness plays the node (binds pods, writes
// their status). Deployment/ReplicaSet/StatefulSet/Job/CronJob controllers, the garbage
// collector, namespace deletion and service-account tokens are real.
//
// Environment: DM_CACHE_DIR (binary cache, see build.sh), DM_CLUSTER_TMPDIR (parent of the
// cluster directory, default os.tmpdir()), DM_KEEP_CLUSTER=1 (keep the directory and its
// logs after stop()), DM_ETCD (etcd binary, default `etcd` on PATH or /usr/bin/etcd).
import { spawn, execFile } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import http from "node:http";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const buildScript = path.join(here, "build.sh");
export const kubernetesVersion = "v1.20.2";

/** The controllers the e2e tests rely on. No nodelifecycle (there are no kubelets, so it would
 *  taint the harness's Node objects and evict their pods), no podgc (it deletes pods bound to
 *  nodes it considers gone), nothing that needs a cloud, volumes or Services. */
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

export interface StartOptions {
  /** progress lines (build output, phases, timings); default: none */
  log?: (line: string) => void;
  /** kube-controller-manager --controllers; default {@link defaultControllers} */
  controllers?: string[];
  /** extra kube-apiserver flags, e.g. ["--feature-gates=..."] */
  apiserverArgs?: string[];
  /** extra kube-controller-manager flags */
  controllerManagerArgs?: string[];
  /** overall start-up deadline in ms (excluding a first-time build); default 90 s */
  timeoutMs?: number;
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
  etcd: string;
}

/** Runs build.sh (seconds when the binaries are cached; a first build takes ~10 min and streams
 *  its progress lines to `log`) and returns the binaries' paths. */
export async function ensureBinaries(log: (line: string) => void = () => {}): Promise<Binaries> {
  await runStreaming("bash", [buildScript], log);
  const binDir = (await execFileText("bash", [buildScript, "--print-bin-dir"])).trim();
  const kubeApiserver = path.join(binDir, "kube-apiserver");
  const kubeControllerManager = path.join(binDir, "kube-controller-manager");
  for (const f of [kubeApiserver, kubeControllerManager]) {
    if (!isExecutable(f)) throw new Error(`${f} missing after ${buildScript}`);
  }
  return { binDir, kubeApiserver, kubeControllerManager, etcd: findEtcd() };
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

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function runStreaming(cmd: string, args: string[], log: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    const tail: string[] = [];
    const onData = (chunk: Buffer, buf: { s: string }) => {
      buf.s += chunk.toString("utf8");
      let nl: number;
      while ((nl = buf.s.indexOf("\n")) >= 0) {
        const line = buf.s.slice(0, nl);
        buf.s = buf.s.slice(nl + 1);
        tail.push(line);
        if (tail.length > 80) tail.shift();
        log(line);
      }
    };
    const out = { s: "" };
    const err = { s: "" };
    child.stdout.on("data", (c: Buffer) => onData(c, out));
    child.stderr.on("data", (c: Buffer) => onData(c, err));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      for (const rest of [out.s, err.s]) if (rest) log(rest);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(" ")} failed (${signal ?? code}):\n${tail.join("\n")}`));
    });
  });
}

function execFileText(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${cmd} ${args.join(" ")}: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// ports

/** A port that was free a moment ago (bind to port 0, read it, close). Another process can take
 *  it before we use it, so the components' start-up retries with new ports on "address in use". */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("no port"))));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// TLS material (openssl; ECDSA P-256 keys are fast to generate, the SA key is RSA as the 1.20
// token controller and issuer expect)

const opensslConfig = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

interface Pki {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  cmCert: string;
  cmKey: string;
  saKey: string;
  saPub: string;
}

async function makePki(dir: string): Promise<Pki> {
  const p = (f: string) => path.join(dir, f);
  const cnf = p("openssl.cnf");
  fs.writeFileSync(cnf, opensslConfig);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const base = ["req", "-config", cnf, "-x509", "-days", "30", ...ec];
  await execFileText("openssl", [
    ...base,
    "-extensions",
    "ca_ext",
    "-subj",
    "/CN=digest-migrations-e2e-ca",
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.crt"),
  ]);
  const signed = (ext: string, subj: string, name: string) =>
    execFileText("openssl", [
      ...base,
      "-CA",
      p("ca.crt"),
      "-CAkey",
      p("ca.key"),
      "-extensions",
      ext,
      "-subj",
      subj,
      "-keyout",
      p(`${name}.key`),
      "-out",
      p(`${name}.crt`),
    ]);
  // The RSA service-account key is generated in-process (no openssl round trip needed).
  const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  fs.writeFileSync(p("sa.key"), privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  fs.writeFileSync(p("sa.pub"), publicKey.export({ type: "spki", format: "pem" }));
  await Promise.all([
    signed("server_ext", "/CN=kube-apiserver", "apiserver"),
    // system:masters: full access without RBAC objects.
    signed("client_ext", "/O=system:masters/CN=digest-migrations-e2e-admin", "admin"),
    // With --use-service-account-credentials=false every controller acts as the controller-manager
    // itself, so it needs all their permissions: give it system:masters too.
    signed("client_ext", "/O=system:masters/CN=system:kube-controller-manager", "controller-manager"),
  ]);
  return {
    caCert: p("ca.crt"),
    caKey: p("ca.key"),
    serverCert: p("apiserver.crt"),
    serverKey: p("apiserver.key"),
    adminCert: p("admin.crt"),
    adminKey: p("admin.key"),
    cmCert: p("controller-manager.crt"),
    cmKey: p("controller-manager.key"),
    saKey: p("sa.key"),
    saPub: p("sa.pub"),
  };
}

/** A kubeconfig as YAML (JSON-quoted scalars are valid YAML). */
function kubeconfigText(
  server: string,
  caFile: string,
  user: string,
  auth: Record<string, string>,
  namespace?: string,
): string {
  const q = (s: string) => JSON.stringify(s);
  const authLines = Object.entries(auth)
    .map(([k, v]) => `    ${k}: ${q(v)}`)
    .join("\n");
  return `apiVersion: v1
kind: Config
clusters:
- name: digest-migrations-e2e
  cluster:
    server: ${q(server)}
    certificate-authority: ${q(caFile)}
users:
- name: ${q(user)}
  user:
${authLines}
contexts:
- name: ${q(user)}
  context:
    cluster: digest-migrations-e2e${namespace ? `\n    namespace: ${q(namespace)}` : ""}
    user: ${q(user)}
current-context: ${q(user)}
`;
}

// ---------------------------------------------------------------------------------------------
// processes

/** Every live cluster of this process, for the exit/signal hooks. */
const live = new Set<ClusterImpl>();
let hooksInstalled = false;

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", () => {
    for (const c of live) c.killNowSync();
  });
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const handler = () => {
      for (const c of live) c.killNowSync();
      // Restore the default disposition unless someone else handles this signal.
      process.removeListener(sig, handler);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

class Proc {
  readonly name: string;
  readonly logFile: string;
  child: ChildProcess;
  exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  readonly exitPromise: Promise<void>;

  constructor(name: string, cmd: string, args: string[], logFile: string, cwd: string) {
    this.name = name;
    this.logFile = logFile;
    const fd = fs.openSync(logFile, "a");
    fs.writeSync(fd, `\n=== ${new Date().toISOString()} ${cmd} ${args.join(" ")}\n`);
    // detached: its own process group, so stop() can signal the whole group.
    this.child = spawn(cmd, args, { cwd, detached: true, stdio: ["ignore", fd, fd] });
    fs.closeSync(fd);
    // Do not keep the test process alive; the exit hook kills the group if stop() is never called.
    this.child.unref();
    this.exitPromise = new Promise((resolve) => {
      this.child.on("exit", (code, signal) => {
        this.exited = { code, signal };
        resolve();
      });
      this.child.on("error", (err) => {
        this.exited = { code: null, signal: null };
        fs.appendFileSync(logFile, `spawn error: ${err.message}\n`);
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  killGroupSync(signal: NodeJS.Signals): void {
    if (this.exited || this.pid === undefined) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      /* already gone */
    }
  }

  /** SIGTERM to the process group, SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.exited) return;
    this.killGroupSync("SIGTERM");
    const timer = setTimeout(() => this.killGroupSync("SIGKILL"), graceMs);
    await this.exitPromise;
    clearTimeout(timer);
    // Children that ignored SIGTERM in the same group.
    if (this.pid !== undefined) {
      try {
        process.kill(-this.pid, "SIGKILL");
      } catch {
        /* group empty */
      }
    }
  }

  tail(lines = 40): string {
    try {
      return fs.readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }
}

// ---------------------------------------------------------------------------------------------
// waiting

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value (not undefined), failing at the deadline or as soon as
 *  one of `procs` exits. */
async function waitFor<T>(
  what: string,
  deadline: number,
  check: () => Promise<T | undefined>,
  procs: Proc[] = [],
): Promise<T> {
  let last = "";
  for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
    for (const p of procs) {
      if (p.exited)
        throw new Error(
          `${p.name} exited (${p.exited.signal ?? p.exited.code}) while waiting for ${what}:\n${p.tail()}`,
        );
    }
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) {
      const tails = procs.map((p) => `--- ${p.name} (${p.logFile}):\n${p.tail(25)}`).join("\n");
      throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last})` : ""}\n${tails}`);
    }
    await sleep(delay);
  }
}

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
  token?: string;
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
    if (tls.token) headers.authorization = `Bearer ${tls.token}`;
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
}

const isAddrInUse = (p: Proc) => /address already in use/i.test(p.tail(60));

class ClusterImpl implements Cluster {
  readonly dir: string;
  server = "";
  adminKubeconfig = "";
  caFile = "";
  adminCertFile = "";
  adminKeyFile = "";
  etcdEndpoint = "";

  private readonly bins: Binaries;
  private readonly opts: StartOptions;
  private readonly log: (line: string) => void;
  private pki!: Pki;
  private ports!: Ports;
  private etcd: Proc | undefined;
  private apiserver: Proc | undefined;
  private controllerManager: Proc | undefined;
  private reaper: ChildProcess | undefined;
  private agent: https.Agent | undefined;
  private tlsAdmin: TlsClient = {};
  private stopped = false;

  constructor(dir: string, bins: Binaries, opts: StartOptions) {
    this.dir = dir;
    this.bins = bins;
    this.opts = opts;
    this.log = opts.log ?? (() => {});
  }

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  async start(): Promise<void> {
    const t0 = Date.now();
    const deadline = t0 + (this.opts.timeoutMs ?? 90_000);
    const phase = (what: string) => this.log(`[cluster +${((Date.now() - t0) / 1000).toFixed(1)}s] ${what}`);

    this.startReaper();
    phase("generating certificates and keys");
    this.pki = await makePki(this.dir);
    this.caFile = this.pki.caCert;
    this.adminCertFile = this.pki.adminCert;
    this.adminKeyFile = this.pki.adminKey;
    this.tlsAdmin = {
      ca: fs.readFileSync(this.pki.caCert),
      cert: fs.readFileSync(this.pki.adminCert),
      key: fs.readFileSync(this.pki.adminKey),
    };
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 16, ...this.tlsAdmin });

    for (let attempt = 1; ; attempt++) {
      this.ports = {
        etcdClient: await freePort(),
        etcdPeer: await freePort(),
        apiserver: await freePort(),
        controllerManager: await freePort(),
      };
      try {
        await this.startAll(deadline, phase);
        break;
      } catch (err) {
        const inUse = [this.etcd, this.apiserver, this.controllerManager].some((p) => p?.exited && isAddrInUse(p));
        await this.stopProcesses();
        if (!inUse || attempt >= 3) throw err;
        phase(`a port was taken by another process; retrying with new ports (attempt ${attempt + 1})`);
      }
    }
    phase(`ready: ${this.server} (dir ${this.dir})`);
  }

  private async startAll(deadline: number, phase: (what: string) => void): Promise<void> {
    const { ports } = this;
    this.server = `https://127.0.0.1:${ports.apiserver}`;
    this.etcdEndpoint = `http://127.0.0.1:${ports.etcdClient}`;

    this.adminKubeconfig = this.file("admin.kubeconfig");
    fs.writeFileSync(
      this.adminKubeconfig,
      kubeconfigText(this.server, this.caFile, "admin", {
        "client-certificate": this.pki.adminCert,
        "client-key": this.pki.adminKey,
      }),
      { mode: 0o600 },
    );
    const cmKubeconfig = this.file("controller-manager.kubeconfig");
    fs.writeFileSync(
      cmKubeconfig,
      kubeconfigText(this.server, this.caFile, "system:kube-controller-manager", {
        "client-certificate": this.pki.cmCert,
        "client-key": this.pki.cmKey,
      }),
      { mode: 0o600 },
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
      "etcd /health",
      deadline,
      async () => {
        // node:http rather than fetch(): undici's pooled sockets would keep the process alive.
        const text = await httpGetText(`${this.etcdEndpoint}/health`);
        return (JSON.parse(text) as { health?: string }).health === "true" ? true : undefined;
      },
      [this.etcd],
    );

    phase(`starting kube-apiserver on ${this.server}`);
    await this.launchApiserver(deadline);

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
      `--service-account-private-key-file=${this.pki.saKey}`,
      `--root-ca-file=${this.pki.caCert}`,
      "--cluster-name=digest-migrations-e2e",
      "--profiling=false",
      "--v=1",
      ...(this.opts.controllerManagerArgs ?? []),
    ]);
    await waitFor(
      "kube-controller-manager /healthz",
      deadline,
      async () => {
        const r = await httpsRequest(`https://127.0.0.1:${ports.controllerManager}/healthz`, "GET", { insecure: true });
        return r.status === 200 ? true : undefined;
      },
      [this.controllerManager, ...(this.apiserver ? [this.apiserver] : [])],
    );
    // The token controller is the last piece pods need (ServiceAccount admission): wait until
    // the default namespace is usable, which also proves the controllers run.
    phase("waiting for the default ServiceAccount token (token controller)");
    await this.waitForServiceAccountToken("default", "default", deadline);
  }

  private spawn(name: string, cmd: string, args: string[]): Proc {
    const p = new Proc(name, cmd, args, this.file(`${name}.log`), this.dir);
    this.writePids();
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
      `--tls-cert-file=${pki.serverCert}`,
      `--tls-private-key-file=${pki.serverKey}`,
      `--client-ca-file=${pki.caCert}`,
      "--authorization-mode=RBAC",
      // 1.20 requires the issuer and signing key (TokenRequest); the public key verifies both
      // the legacy Secret tokens (signed by the controller-manager) and bound tokens.
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-signing-key-file=${pki.saKey}`,
      `--service-account-key-file=${pki.saPub}`,
      "--service-cluster-ip-range=10.0.0.0/24",
      // The "kubernetes" Service's Endpoints may not point at loopback: do not reconcile them.
      "--endpoint-reconciler-type=none",
      // Default plugin set of 1.20 (NamespaceLifecycle, LimitRanger, ServiceAccount, Priority,
      // DefaultTolerationSeconds, ResourceQuota, webhooks, …), named so it does not drift.
      "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,Priority,ResourceQuota,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
      "--allow-privileged=true",
      "--profiling=false",
      "--v=1",
      ...(this.opts.apiserverArgs ?? []),
    ];
  }

  private async launchApiserver(deadline: number): Promise<void> {
    this.apiserver = this.spawn("kube-apiserver", this.bins.kubeApiserver, this.apiserverArgs());
    await waitFor(
      "kube-apiserver /readyz",
      deadline,
      async () => {
        const r = await httpsRequest(`${this.server}/readyz`, "GET", this.tlsAdmin);
        return r.status === 200 ? true : undefined;
      },
      [this.apiserver, ...(this.etcd ? [this.etcd] : [])],
    );
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
    await this.waitForServiceAccountToken(namespace, "default", Date.now() + 60_000);
  }

  /** Waits for the legacy token Secret the 1.20 token controller creates for a ServiceAccount. */
  private async waitForServiceAccountToken(
    namespace: string,
    serviceAccount: string,
    deadline: number,
  ): Promise<string> {
    const ns = encodeURIComponent(namespace);
    const sa = encodeURIComponent(serviceAccount);
    return waitFor(
      `a token for ServiceAccount ${namespace}/${serviceAccount}`,
      deadline,
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
      [this.apiserver, this.controllerManager].filter((p): p is Proc => p !== undefined),
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
    const token = await this.waitForServiceAccountToken(namespace, serviceAccount, Date.now() + 60_000);
    const user = `system:serviceaccount:${namespace}:${serviceAccount}`;
    const file = this.file(`kubeconfig-${namespace}-${serviceAccount}`.replace(/[^A-Za-z0-9._-]/g, "_"));
    // The namespace is the context's default, like an in-cluster client's.
    fs.writeFileSync(file, kubeconfigText(this.server, this.caFile, user, { token }, namespace), { mode: 0o600 });
    return file;
  }

  async stopApiserver(): Promise<void> {
    await this.apiserver?.stop();
    this.writePids();
  }

  async startApiserver(): Promise<void> {
    if (this.stopped) throw new Error("cluster stopped");
    if (this.apiserver && !this.apiserver.exited) return;
    this.agent?.destroy(); // drop keep-alive sockets to the old process
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 16, ...this.tlsAdmin });
    // Its port stays ours: nothing else on this machine listens on a port we got from the kernel
    // moments ago unless it asks for it explicitly (SO_REUSEADDR lets the new process rebind).
    await this.launchApiserver(Date.now() + (this.opts.timeoutMs ?? 90_000));
  }

  private async stopProcesses(): Promise<void> {
    // Controller-manager first (it would log errors without the apiserver), etcd last.
    for (const p of [this.controllerManager, this.apiserver, this.etcd]) await p?.stop();
    this.controllerManager = this.apiserver = this.etcd = undefined;
    this.writePids();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      await this.stopProcesses();
    } finally {
      this.agent?.destroy();
      live.delete(this);
      this.removeDir();
    }
  }

  private removeDir(): void {
    if (process.env.DM_KEEP_CLUSTER === "1") {
      this.log(`[cluster] keeping ${this.dir} (DM_KEEP_CLUSTER=1)`);
      try {
        fs.rmSync(path.join(this.dir, "pids"), { force: true });
      } catch {
        /* ignore */
      }
      return;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** Synchronous last resort for process exit and fatal signals. */
  killNowSync(): void {
    for (const p of [this.controllerManager, this.apiserver, this.etcd]) p?.killGroupSync("SIGKILL");
    this.stopped = true;
    try {
      this.removeDir();
    } catch {
      /* ignore */
    }
  }

  /** The process groups to kill if this Node process dies without running its exit hook
   *  (SIGKILL, OOM): read by the reaper. */
  private writePids(): void {
    const pids: number[] = [];
    for (const p of [this.etcd, this.apiserver, this.controllerManager]) if (p && !p.exited && p.pid) pids.push(p.pid);
    try {
      fs.writeFileSync(this.file("pids.tmp"), pids.join("\n") + "\n");
      fs.renameSync(this.file("pids.tmp"), this.file("pids"));
    } catch {
      /* dir gone */
    }
  }

  /** A detached shell that outlives us: when this Node process disappears while the cluster
   *  directory still exists (so stop() never ran), it kills the recorded process groups and
   *  removes the directory. It exits by itself once the directory is gone. */
  private startReaper(): void {
    const script = `
      while kill -0 "$1" 2>/dev/null && [ -d "$2" ]; do sleep 1; done
      if [ -f "$2/pids" ]; then
        for p in $(cat "$2/pids"); do kill -TERM -- "-$p" 2>/dev/null; done
        sleep 2
        for p in $(cat "$2/pids"); do kill -KILL -- "-$p" 2>/dev/null; done
        rm -rf "$2"
      fi`;
    this.reaper = spawn("sh", ["-c", script, "dm-cluster-reaper", String(process.pid), this.dir], {
      detached: true,
      stdio: "ignore",
    });
    this.reaper.unref();
  }
}

/** Starts etcd, kube-apiserver and kube-controller-manager (building them first if this machine
 *  has no cached binaries) and waits until they are ready. */
export async function startCluster(opts: StartOptions = {}): Promise<Cluster> {
  const log = opts.log ?? (() => {});
  const t0 = Date.now();
  const bins = await ensureBinaries(log);
  const parent = process.env.DM_CLUSTER_TMPDIR || os.tmpdir();
  fs.mkdirSync(parent, { recursive: true });
  const dir = fs.mkdtempSync(path.join(parent, "dm-cluster-"));
  installExitHooks();
  const cluster = new ClusterImpl(dir, bins, opts);
  live.add(cluster);
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
