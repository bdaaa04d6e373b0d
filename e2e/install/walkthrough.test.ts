// A platform engineer new to the project installs it by following docs/install.md, on a fresh control plane
// that stands in for their cluster with Argo CD (namespace argocd holding argocd-cm and argocd-repo-server).
// The commands are taken from the docs' code blocks, not retyped here: if the docs change a command, the new
// one is what runs; if they drop one, this test fails. They run in bash with the real helm and kubectl, from
// the repository root, with only KUBECONFIG pointing at the control plane.
//
// What cannot run here, and what stands in for it:
// - The control plane has no kubelet for the reconciler's own pods (the node emulator cannot mount a
//   ServiceAccount token into a process), so the chart's Deployment never becomes available. The reconciler
//   runs beside the cluster instead, with the arguments and environment of that live Deployment and the token
//   of the ServiceAccount the chart created: the RBAC, CRD and flags under test are the installed ones.
// - `kubectl port-forward` needs a kubelet too: the docs' curl of /readyz and /metrics goes straight to the
//   reconciler's metrics port.
// - Argo CD's own install.yaml is fetched over the network; a local stand-in with the objects the steps touch
//   takes its place in the user's kustomization.
import { spawn, execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import t from "tap";
import type { Test } from "tap";
import { parse } from "yaml";
import { freePort } from "../kit/ports.ts";
import { sharedCluster } from "../harness/env.ts";
import { waitFor } from "../kit/wait.ts";
import { expand } from "../emulator/env.ts";
import { KubeClient } from "../kit/client.ts";
import { tools } from "../../plugin/test/tools.ts";
import type { Container, KubeObject } from "@digest-migrations/shared";

const ROOT = path.resolve(import.meta.dirname, "../..");
const INSTALL_DOC = path.join(ROOT, "docs/install.md");
const USAGE_DOC = path.join(ROOT, "docs/usage.md");
const RECONCILER_BUNDLE = path.join(ROOT, "reconciler/dist/reconciler.mjs");
const SYSTEM_NAMESPACE = "digest-migrations-system";
const DEPLOYMENT = "digest-migrations-reconciler";
const CRD = "migrators.migrations.coderanger.net";

interface Block {
  lang: string;
  text: string;
}

/** The fenced code blocks of a Markdown file. */
function codeBlocks(file: string): Block[] {
  const blocks: Block[] = [];
  for (const m of readFileSync(file, "utf8").matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)) {
    blocks.push({ lang: m[1] ?? "", text: m[2] ?? "" });
  }
  return blocks;
}

/**
 * The shell commands a reader can copy from a Markdown file: each line of a `sh` block (backslash
 * continuations joined, comments dropped) and each inline `kubectl …` / `helm …` span of the prose.
 */
function commands(file: string): string[] {
  const found: string[] = [];
  for (const block of codeBlocks(file).filter((b) => b.lang === "sh")) {
    const lines = block.text.replace(/\\\n\s*/g, "").split("\n");
    found.push(...lines.map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#")));
  }
  const prose = readFileSync(file, "utf8").replace(/^```\w*\n[\s\S]*?^```$/gm, "");
  for (const m of prose.matchAll(/`((?:kubectl|helm) [^`]+)`/g)) found.push(m[1] ?? "");
  return found;
}

/** The one command of docs/install.md that starts with `prefix` (the test fails if there is none or several). */
function installCommand(prefix: string): string {
  const hits = [...new Set(commands(INSTALL_DOC).filter((c) => c.startsWith(prefix)))];
  if (hits.length !== 1) {
    throw new Error(
      `docs/install.md: expected one command starting with "${prefix}", found ${hits.length}: ${hits.join(" | ")}`,
    );
  }
  return hits[0]!;
}

const cluster = await sharedCluster();
const admin = KubeClient.fromFile(cluster.adminKubeconfig);
const home = mkdtempSync(path.join(tmpdir(), "dm-walkthrough-"));
t.teardown(() => rmSync(home, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command line as the reader would, in bash from the repository root. */
async function sh(command: string): Promise<Run> {
  try {
    const { stdout, stderr } = await promisify(execFile)("bash", ["-o", "pipefail", "-c", command], {
      cwd: ROOT,
      encoding: "utf8",
      maxBuffer: 16 * 1024 * 1024,
      env: {
        PATH: `${tools().bin}:${process.env["PATH"] ?? ""}`,
        HOME: home,
        KUBECONFIG: cluster.adminKubeconfig,
      },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

/** Runs `command` and records that it succeeded (its stderr is quoted if not). */
async function step(t: Test, command: string): Promise<string> {
  const run = await sh(command);
  t.equal(run.code, 0, `$ ${command}`, { stderr: run.stderr.trim(), stdout: run.stdout.trim() });
  return run.stdout;
}

async function argocdCm(): Promise<Record<string, string>> {
  const cm = await admin.get<KubeObject & { data?: Record<string, string> }>(
    "/api/v1/namespaces/argocd/configmaps/argocd-cm",
  );
  return cm.data ?? {};
}

const MIGRATOR_KEYS = [
  "resource.customizations.actions.migrations.coderanger.net_Migrator",
  "resource.customizations.health.migrations.coderanger.net_Migrator",
];

t.test("a cluster with Argo CD, before the install", async (t) => {
  // What Argo CD's install.yaml leaves behind for the steps below: argocd-cm applied client-side (so it
  // carries a last-applied annotation, the case the docs warn about) and the repo server.
  const argocd = path.join(home, "argocd");
  mkdirSync(argocd);
  cpSync(path.join(import.meta.dirname, "testdata/argocd-repo-server.yaml"), path.join(argocd, "repo-server.yaml"));
  writeFileSync(
    path.join(argocd, "argocd-cm.yaml"),
    [
      "apiVersion: v1",
      "kind: ConfigMap",
      "metadata: {name: argocd-cm, labels: {app.kubernetes.io/name: argocd-cm, app.kubernetes.io/part-of: argocd}}",
      "data: {url: https://argocd.example.com}",
    ].join("\n"),
  );
  await step(t, "kubectl create namespace argocd");
  await step(t, `kubectl -n argocd apply -f ${argocd}`);
});

t.test("1a. the reconciler with Helm, one command", async (t) => {
  const install = await step(t, installCommand("helm install digest-migrations "));
  t.match(install, /digest-migrations 0\.1\.0 is installed in namespace digest-migrations-system/, "NOTES");
  t.match(install, /http:\/\/digest-migrations\.digest-migrations-system\.svc:8443/, "NOTES name the waiter URL");
  await step(t, installCommand("kubectl label namespace digest-migrations-system"));
  const pdb = await step(t, `kubectl -n ${SYSTEM_NAMESPACE} get pdb ${DEPLOYMENT} -o jsonpath='{.apiVersion}'`);
  t.equal(pdb, "policy/v1beta1", "the chart picked the PodDisruptionBudget version this 1.20 cluster serves");
});

t.test("2a. the plugin sidecar in the user's own Argo CD kustomization, with the argocd-cm component", async (t) => {
  // The docs: copy repo-server-sidecar.yaml beside your kustomization.yaml and add their snippet to it.
  const snippet = codeBlocks(INSTALL_DOC).find((b) => b.text.startsWith("# your argocd/kustomization.yaml"));
  if (snippet === undefined) throw new Error("docs/install.md: the kustomization snippet is gone");
  const dir = path.join(home, "my-argocd");
  mkdirSync(dir);
  cpSync(
    path.join(ROOT, "plugin/deploy/kustomize/repo-server-sidecar.yaml"),
    path.join(dir, "repo-server-sidecar.yaml"),
  );
  const standIn = [
    readFileSync(path.join(home, "argocd/argocd-cm.yaml"), "utf8"),
    readFileSync(path.join(home, "argocd/repo-server.yaml"), "utf8"),
  ].join("\n---\n");
  writeFileSync(path.join(dir, "install.yaml"), standIn);
  writeFileSync(
    path.join(dir, "kustomization.yaml"),
    `namespace: argocd\nresources: [install.yaml]\n${snippet.text.replaceAll("<path to this repository>", path.relative(dir, ROOT))}`,
  );
  await step(
    t,
    `cd ${dir} && ${installCommand("kubectl apply --server-side --force-conflicts -k ").replace("plugin/deploy/kustomize", ".")}`,
  );

  const names = await step(t, installCommand("kubectl -n argocd get deployment argocd-repo-server -o jsonpath"));
  t.same(names.trim().split(/\s+/).sort(), ["argocd-repo-server", "digest-migrations"], "the sidecar is there");
  const data = await argocdCm();
  t.same(Object.keys(data).sort(), [...MIGRATOR_KEYS, "url"], "the component added the two keys, url is kept");
});

// Each of the three ways the docs offer (the README quotes the first), one after the other: each must succeed
// on the live argocd-cm and leave Argo CD's own keys alone.
for (const prefix of [
  "kubectl -n argocd patch configmap argocd-cm --type merge --patch-file",
  "kubectl apply --server-side --field-manager=digest-migrations -f deploy/argocd/argocd-cm.yaml",
  "kubectl -n argocd patch configmap argocd-cm --type merge -p",
]) {
  t.test(`3. the argocd-cm keys: ${prefix}`, async (t) => {
    await step(t, installCommand(prefix));
    const data = await argocdCm();
    t.same(Object.keys(data).sort(), [...MIGRATOR_KEYS, "url"], "the two keys, nothing dropped");
    const shipped = parse(readFileSync(path.join(ROOT, "deploy/argocd/argocd-cm.yaml"), "utf8")) as {
      data: Record<string, string>;
    };
    for (const key of MIGRATOR_KEYS) t.equal(data[key], shipped.data[key], `${key} is the shipped script`);
  });
}

t.test("4. verify: CRD, Lease holder, readiness, metrics, Migrators", async (t) => {
  await step(t, installCommand("kubectl get crd migrators.migrations.coderanger.net"));

  // The reconciler as the chart deployed it (see the header for why it runs beside the cluster).
  const deployment = await admin.get<
    KubeObject & { spec: { template: { spec: { containers: Container[]; serviceAccountName: string } } } }
  >(`/apis/apps/v1/namespaces/${SYSTEM_NAMESPACE}/deployments/${DEPLOYMENT}`);
  const container = deployment.spec.template.spec.containers[0]!;
  const env: Record<string, string> = { POD_NAME: `${DEPLOYMENT}-walkthrough`, POD_NAMESPACE: SYSTEM_NAMESPACE };
  for (const e of container.env ?? []) if (e.value !== undefined) env[e.name] = expand(e.value, env);
  const metricsPort = await freePort();
  const waiterPort = await freePort();
  const args = (container.args ?? [])
    .map((a) => expand(a, env))
    .map((a) => a.replace(/^--metrics-port=.*/, `--metrics-port=${metricsPort}`))
    .map((a) => a.replace(/^--waiter-port=.*/, `--waiter-port=${waiterPort}`));
  t.ok(args.includes(`--leader-election-namespace=${SYSTEM_NAMESPACE}`), "the Deployment's arguments");
  const kubeconfig = await cluster.kubeconfigFor(SYSTEM_NAMESPACE, deployment.spec.template.spec.serviceAccountName);
  const child = spawn(
    process.execPath,
    [RECONCILER_BUNDLE, ...args, "--bind-address=127.0.0.1", `--kubeconfig=${kubeconfig}`],
    { env: { ...env, PATH: process.env["PATH"] ?? "" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  t.teardown(() => void child.kill("SIGKILL"));

  // Its leader election identity is the pod's hostname plus a random suffix, as client-go's; it logs it.
  const identity = await waitFor(() => /"identity":"([^"]+)"/.exec(output)?.[1], {
    what: "the reconciler to log its identity",
    timeoutMs: 30_000,
    describe: () => output.slice(-2000),
  });
  const lease = installCommand("kubectl -n digest-migrations-system get lease digest-migrations-reconciler");
  await waitFor(async () => (await sh(lease)).stdout.trim() === identity, {
    what: "the reconciler to hold the Lease",
    timeoutMs: 60_000,
    describe: () => output.slice(-2000),
  });
  t.pass(`$ ${lease} → ${identity}`);
  const readyz = await waitFor(
    async () => {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
      return res.status === 200 ? res.text() : undefined;
    },
    { what: "/readyz", timeoutMs: 30_000, describe: () => output.slice(-2000) },
  );
  t.ok(readyz.length > 0, "/readyz answers 200");
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  t.match(metrics, /^digest_migrations_leader 1$/m, "leader");
  t.match(metrics, /^digest_migrations_caches_synced 1$/m, "caches synced");

  // The Migrator of docs/usage.md, in a namespace of its own.
  const migrator = codeBlocks(USAGE_DOC).find((b) => b.lang === "yaml" && /^kind: Migrator$/m.test(b.text));
  if (migrator === undefined) throw new Error("docs/usage.md: the Migrator example is gone");
  writeFileSync(path.join(home, "migrator.yaml"), migrator.text);
  await step(t, "kubectl create namespace apps");
  await step(t, `kubectl apply -f ${path.join(home, "migrator.yaml")}`);
  const list = installCommand("kubectl get migrators -A");
  const table = await waitFor(
    async () => {
      const out = (await sh(list)).stdout;
      return /WaitingForPods/.test(out) ? out : undefined;
    },
    { what: "the Migrator's status in kubectl get", timeoutMs: 30_000, describe: () => output.slice(-2000) },
  );
  t.match(table, /^NAMESPACE\s+NAME\s+DIGEST\s+READY\s+REASON\s+AGE$/m, "the documented columns");
  // No digest migrated yet, no pods selected yet: Ready, so a first sync is not held up (docs/migrator.md).
  t.match(table, /^apps\s+myapp-migrations\s+True\s+WaitingForPods\s+\S+$/m, "one row per Migrator");

  child.kill("SIGTERM");
  t.equal(await exited, 0, "the reconciler exits 0 on SIGTERM", { output: output.slice(-2000) });
});

t.test("uninstall: helm leaves the CRD; deleting it removes every Migrator", async (t) => {
  await step(t, installCommand("helm uninstall digest-migrations "));
  await step(t, installCommand("kubectl get crd migrators.migrations.coderanger.net"));
  t.equal(
    (await sh("kubectl -n apps get migrator myapp-migrations -o name")).code,
    0,
    "the Migrator outlives the chart",
  );
  await step(t, `kubectl delete crd ${CRD}`);
  t.not((await sh("kubectl get migrators -A")).code, 0, "no Migrator kind any more");
});
