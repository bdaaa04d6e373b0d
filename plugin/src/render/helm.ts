// Helm sources, templated as Argo CD templates them (util/helm: `helm template . --name-template <app>
// --namespace <ns> --kube-version <v> --values … --set … --api-versions … --include-crds`). No
// post-renderer, no plugins (HELM_PLUGINS is an empty directory), no repository access: dependencies must
// be vendored under charts/. Values files must stay inside the repository. The output is read by output.ts.
import { realpathSync, writeFileSync } from "node:fs";
import path from "node:path";
import { PluginError, unresolvable } from "../errors.ts";
import type { Env } from "../parameters.ts";
import type { Settings } from "../settings.ts";
import { assertNoEscapingSymlinks } from "../source/files.ts";
import { findOnPath, run, withScratch } from "./exec.ts";
import type { RendererOutput } from "./exec.ts";

/** Helm's limit on release names. */
const RELEASE_NAME_MAX = 53;

/** Runs the template; the process is already running when this returns (every step before it is synchronous). */
export async function runHelm(settings: Settings, env: Env): Promise<RendererOutput> {
  assertNoEscapingSymlinks(settings.dir, settings.boundary);
  const helm = findOnPath("helm", env);
  if (helm === undefined) throw new PluginError("Chart.yaml found but helm is not on PATH");
  const release = settings.helm.releaseName.slice(0, RELEASE_NAME_MAX);
  const valuesFiles = settings.helm.valuesFiles.map((f) => checkedValuesFile(f, settings));

  return withScratch(env["PATH"] ?? "", async (scratch) => {
    const args = ["template", ".", "--name-template", release];
    if (settings.namespace !== "") args.push("--namespace", settings.namespace);
    if (settings.kubeVersion !== undefined) args.push("--kube-version", settings.kubeVersion);
    for (const f of valuesFiles) args.push("--values", f);
    if (settings.helm.values !== undefined) {
      const inline = path.join(scratch.dir, "values-from-parameters.yaml");
      writeFileSync(inline, settings.helm.values, { mode: 0o600 });
      args.push("--values", inline);
    }
    for (const key of Object.keys(settings.helm.parameters).sort()) {
      args.push("--set", `${key}=${escapeSetValue(settings.helm.parameters[key] ?? "")}`);
    }
    for (const v of settings.apiVersions) args.push("--api-versions", v);
    args.push("--include-crds");
    const output = await run(helm, args, {
      cwd: settings.dir,
      env: scratch.env,
      timeoutMs: settings.renderTimeoutMs,
      maxOutput: settings.maxTotalSize,
    });
    return { output, origin: "helm template output" };
  });
}

/** A values file named by a parameter: relative to the application, inside the repository, not a URL. */
function checkedValuesFile(file: string, settings: Settings): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(file)) throw new PluginError(`helm-values-files: ${file}: URLs are not fetched`);
  const abs = path.resolve(settings.dir, file);
  let real: string;
  try {
    real = realpathSync(abs);
  } catch (error) {
    if (unresolvable(error)) throw new PluginError(`helm-values-files: ${file}: no such file`);
    throw new PluginError(`helm-values-files: ${file}: ${(error as Error).message}`);
  }
  const boundary = realpathSync(settings.boundary);
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
