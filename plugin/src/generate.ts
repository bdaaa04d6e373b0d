// The plugin as a function: read → render → wire → order → serialise. Nothing is written anywhere; the
// caller writes the returned stream once, so a failure can never leave partial output behind.
//
// This module only resolves the settings and starts the renderer; everything after it (assemble.ts: the
// YAML parser, reading files, wiring, ordering, serialising — most of the bundle) is imported once
// kustomize or helm is running, and loads while it runs. The bundle is split at that import
// (scripts/build.ts), so a Kustomize or Helm source does not wait for those modules before its renderer
// starts.
import { existsSync } from "node:fs";
import path from "node:path";
import { PluginError } from "./errors.ts";
import type { Manifest } from "./manifests.ts";
import type { Env } from "./parameters.ts";
import type { RendererOutput } from "./render/exec.ts";
import { runHelm } from "./render/helm.ts";
import { KUSTOMIZATION_FILES, runKustomize } from "./render/kustomize.ts";
import { resolveSettings } from "./settings.ts";
import type { Settings, SourceType } from "./settings.ts";
import type { WiringReport } from "./wire.ts";

export interface GenerateOptions {
  /** The application directory; default: the working directory (where Argo CD runs generate). */
  dir?: string;
  /** Argo CD's environment; default: process.env. */
  env?: Env;
  /** "json" (default): JSON documents, each opened by `---`, what Argo CD reads; "yaml" for people. */
  output?: "json" | "yaml";
}

export interface GenerateResult {
  output: string;
  settings: Settings;
  sourceType: SourceType;
  manifests: Manifest[];
  report: WiringReport;
  /** Files a directory source did not read as manifests, and why. */
  skipped: { rel: string; reason: string }[];
}

/** A rendered source: a renderer's output, or a directory whose files are read as they are. */
export type Rendered = { sourceType: "directory" } | ({ sourceType: "kustomize" | "helm" } & RendererOutput);

/** Which renderer a directory needs, as Argo CD decides it (a chart, a kustomization, or plain files). */
export function detectSourceType(dir: string): SourceType {
  const chart = existsSync(path.join(dir, "Chart.yaml"));
  const kustomization = KUSTOMIZATION_FILES.some((f) => existsSync(path.join(dir, f)));
  if (chart && kustomization) {
    throw new PluginError("both Chart.yaml and a kustomization found; set parameter source-type to helm or kustomize");
  }
  if (chart) return "helm";
  if (kustomization) return "kustomize";
  return "directory";
}

/** Starts the source's renderer; for kustomize and helm the process is running when this returns. */
async function render(sourceType: SourceType, settings: Settings, env: Env): Promise<Rendered> {
  switch (sourceType) {
    case "directory":
      return { sourceType };
    case "kustomize":
      return { sourceType, ...(await runKustomize(settings, env)) };
    case "helm":
      return { sourceType, ...(await runHelm(settings, env)) };
  }
}

export async function generateDetailed(options: GenerateOptions = {}): Promise<GenerateResult> {
  const env = options.env ?? process.env;
  const settings = resolveSettings(options.dir ?? process.cwd(), env);
  if (!existsSync(settings.dir)) throw new PluginError(`${settings.dir}: no such directory`);
  const sourceType = settings.sourceType === "auto" ? detectSourceType(settings.dir) : settings.sourceType;
  const rendering = render(sourceType, settings, env);
  const [{ assemble }, rendered] = await Promise.all([import("./assemble.ts"), rendering]);
  return assemble(rendered, settings, options.output ?? "json");
}

/** The stream Argo CD's generate expects. */
export async function generate(options: GenerateOptions = {}): Promise<string> {
  return (await generateDetailed(options)).output;
}
