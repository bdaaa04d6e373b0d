// Helm sources, templated as Argo CD templates them (util/helm: `helm template . --name-template <app>
// --namespace <ns> --kube-version <v> --values … --set … --api-versions … --include-crds`). No
// post-renderer, no plugins (HELM_PLUGINS is an empty directory), no repository access: dependencies must
// be vendored under charts/. Values files must stay inside the repository.
import { realpath, writeFile } from "node:fs/promises";
import path from "node:path";
import { PluginError, unresolvable } from "../errors.ts";
import type { Manifest } from "../manifests.ts";
import { manifestsFrom } from "../manifests.ts";
import type { Env } from "../parameters.ts";
import type { Settings } from "../settings.ts";
import { assertNoEscapingSymlinks } from "../source/files.ts";
import { ManifestSyntaxError, parseYamlStream } from "../yaml-io.ts";
import { findOnPath, run, withScratch } from "./exec.ts";

/** Helm's limit on release names. */
const RELEASE_NAME_MAX = 53;

export async function renderHelm(settings: Settings, env: Env): Promise<Manifest[]> {
  await assertNoEscapingSymlinks(settings.dir, settings.boundary);
  const helm = await findOnPath("helm", env);
  if (helm === undefined) throw new PluginError("Chart.yaml found but helm is not on PATH");
  const release = settings.helm.releaseName.slice(0, RELEASE_NAME_MAX);
  const valuesFiles = await Promise.all(settings.helm.valuesFiles.map((f) => checkedValuesFile(f, settings)));

  const output = await withScratch(env["PATH"] ?? "", async (scratch) => {
    const args = ["template", ".", "--name-template", release];
    if (settings.namespace !== "") args.push("--namespace", settings.namespace);
    if (settings.kubeVersion !== undefined) args.push("--kube-version", settings.kubeVersion);
    for (const f of valuesFiles) args.push("--values", f);
    if (settings.helm.values !== undefined) {
      const inline = path.join(scratch.dir, "values-from-parameters.yaml");
      await writeFile(inline, settings.helm.values, { mode: 0o600 });
      args.push("--values", inline);
    }
    for (const key of Object.keys(settings.helm.parameters).sort()) {
      args.push("--set", `${key}=${escapeSetValue(settings.helm.parameters[key] ?? "")}`);
    }
    for (const v of settings.apiVersions) args.push("--api-versions", v);
    args.push("--include-crds");
    return run(helm, args, {
      cwd: settings.dir,
      env: scratch.env,
      timeoutMs: settings.renderTimeoutMs,
      maxOutput: settings.maxTotalSize,
    });
  });
  return manifestsFromHelmOutput(output);
}

/** Objects of `helm template` output; each names its template (helm's `# Source:` comment) as its file. */
export function manifestsFromHelmOutput(output: string): Manifest[] {
  let documents;
  try {
    documents = parseYamlStream(output);
  } catch (error) {
    if (error instanceof ManifestSyntaxError) {
      throw new PluginError(`${sourceAt(output, error.line)}:${error.line}: ${error.message}`);
    }
    throw error;
  }
  const sources = sourceComments(output);
  const out: Manifest[] = [];
  for (const doc of documents) {
    out.push(...manifestsFrom(sourceFor(sources, doc.line), [doc]));
  }
  return out;
}

/** Lines of helm's `# Source: <chart>/templates/<file>` comments, in order. */
function sourceComments(output: string): { line: number; source: string }[] {
  const out: { line: number; source: string }[] = [];
  const lines = output.split("\n");
  lines.forEach((l, i) => {
    if (l.startsWith("# Source: ")) out.push({ line: i + 1, source: l.slice("# Source: ".length).trim() });
  });
  return out;
}

function sourceFor(sources: readonly { line: number; source: string }[], line: number): string {
  let found: string | undefined;
  for (const s of sources) {
    if (s.line > line) break;
    found = s.source;
  }
  return found === undefined ? "helm template output" : `helm template output (${found})`;
}

function sourceAt(output: string, line: number): string {
  return sourceFor(sourceComments(output), line);
}

/** A values file named by a parameter: relative to the application, inside the repository, not a URL. */
async function checkedValuesFile(file: string, settings: Settings): Promise<string> {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(file)) throw new PluginError(`helm-values-files: ${file}: URLs are not fetched`);
  const abs = path.resolve(settings.dir, file);
  let real: string;
  try {
    real = await realpath(abs);
  } catch (error) {
    if (unresolvable(error)) throw new PluginError(`helm-values-files: ${file}: no such file`);
    throw new PluginError(`helm-values-files: ${file}: ${(error as Error).message}`);
  }
  const boundary = await realpath(settings.boundary);
  const rel = path.relative(boundary, real);
  if (rel.startsWith("..") || path.isAbsolute(rel)) {
    throw new PluginError(`helm-values-files: ${file}: outside the repository`);
  }
  return real;
}

/** As Argo CD does for --set: commas in a value are literal unless the value is a {a,b} list. */
export function escapeSetValue(value: string): string {
  if (value.startsWith("{") && value.endsWith("}")) return value;
  return value.replace(/(?<!\\),/g, "\\,");
}
