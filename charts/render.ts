// Renders the install manifests the way users install them, with the real helm and kubectl binaries (from
// plugin/test/tools.ts): the Helm chart (`helm template`) and the Kustomize base (`kubectl kustomize`).
// The end-to-end suite applies these renderings to its API server; the tests here check them statically.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseAllDocuments } from "yaml";
import { tools } from "../plugin/test/tools.ts";

export const ROOT = path.resolve(import.meta.dirname, "..");
export const CHART_DIR = path.join(ROOT, "charts", "digest-migrations");
export const KUSTOMIZE_DIR = path.join(ROOT, "deploy", "kustomize");
export const RECONCILER_DEPLOY_DIR = path.join(ROOT, "reconciler", "deploy");
export const NAMESPACED_DEPLOY_DIR = path.join(ROOT, "deploy", "namespaced");

export interface ChartOptions {
  /** Release name (default "digest-migrations"). */
  releaseName?: string;
  /** Release namespace (default "digest-migrations-system", where reconciler/deploy installs). */
  namespace?: string;
  /** Render crds/ too, as `helm install` applies them (default true). */
  includeCrds?: boolean;
  /** `--kube-version`: the cluster version the chart renders for (default helm's own). */
  kubeVersion?: string;
}

function run(command: string, args: string[], what: string): string {
  try {
    return execFileSync(command, args, { encoding: "utf8", stdio: "pipe", maxBuffer: 64 * 1024 * 1024 });
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`${what}: ${(e.stderr ?? "").trim() || e.message}`, { cause: error });
  }
}

/** `helm template` of charts/digest-migrations with these values: one YAML stream. */
export function renderChart(values: Record<string, unknown> = {}, options: ChartOptions = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), "digest-migrations-values-"));
  try {
    const file = path.join(dir, "values.json"); // JSON is YAML
    writeFileSync(file, JSON.stringify(values));
    const args = ["template", options.releaseName ?? "digest-migrations", CHART_DIR];
    args.push("--namespace", options.namespace ?? "digest-migrations-system", "--values", file);
    if (options.includeCrds ?? true) args.push("--include-crds");
    if (options.kubeVersion !== undefined) args.push("--kube-version", options.kubeVersion);
    return run(tools().helm, args, `helm template ${CHART_DIR}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `helm lint --strict` of the chart: its output, or an error with it. */
export function lintChart(values: Record<string, unknown> = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), "digest-migrations-values-"));
  try {
    const file = path.join(dir, "values.json");
    writeFileSync(file, JSON.stringify(values));
    return run(tools().helm, ["lint", "--strict", CHART_DIR, "--values", file], `helm lint ${CHART_DIR}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `kubectl kustomize` of a kustomization directory (default deploy/kustomize): one YAML stream. */
export function renderKustomize(dir: string = KUSTOMIZE_DIR): string {
  return run(tools().kubectl, ["kustomize", dir], `kubectl kustomize ${dir}`);
}

/** A Kubernetes object as the renderings hold it. */
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [field: string]: unknown;
}

/** The objects of a YAML stream (empty documents dropped); a YAML error names the document. */
export function parseManifests(stream: string, where = "rendering"): Manifest[] {
  return parseAllDocuments(stream).flatMap((doc, i) => {
    if (doc.errors.length > 0) throw new Error(`${where}, document ${i + 1}: ${doc.errors[0]!.message}`);
    const value = doc.toJSON() as Manifest | null;
    return value === null ? [] : [value];
  });
}

/** "Kind/namespace/name", a key to find an object by. */
export function keyOf(m: Manifest): string {
  return `${m.kind}/${m.metadata.namespace ?? ""}/${m.metadata.name}`;
}
