// The plugin as a function: read → render → wire → order → serialise. Nothing is written anywhere; the
// caller writes the returned stream once, so a failure can never leave partial output behind.
import { existsSync } from "node:fs";
import path from "node:path";
import { PluginError } from "./errors.ts";
import { checkDuplicates } from "./manifests.ts";
import type { Manifest } from "./manifests.ts";
import { sortManifests } from "./order.ts";
import type { Env } from "./parameters.ts";
import { renderHelm } from "./render/helm.ts";
import { KUSTOMIZATION_FILES, renderKustomize } from "./render/kustomize.ts";
import { renderPlain } from "./render/plain.ts";
import { resolveSettings } from "./settings.ts";
import type { Settings, SourceType } from "./settings.ts";
import { wire } from "./wire.ts";
import type { WiringReport } from "./wire.ts";
import { serializeStream, serializeYamlStream } from "./yaml-io.ts";

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

export async function generateDetailed(options: GenerateOptions = {}): Promise<GenerateResult> {
  const env = options.env ?? process.env;
  const settings = resolveSettings(options.dir ?? process.cwd(), env);
  if (!existsSync(settings.dir)) throw new PluginError(`${settings.dir}: no such directory`);
  const sourceType = settings.sourceType === "auto" ? detectSourceType(settings.dir) : settings.sourceType;

  let manifests: Manifest[];
  let skipped: GenerateResult["skipped"] = [];
  switch (sourceType) {
    case "directory": {
      const plain = await renderPlain(settings);
      manifests = plain.manifests;
      skipped = plain.skipped;
      break;
    }
    case "kustomize":
      manifests = await renderKustomize(settings, env);
      break;
    case "helm":
      manifests = await renderHelm(settings, env);
      break;
  }

  checkDuplicates(manifests, settings.namespace);
  const report = wire(manifests, {
    defaultNamespace: settings.namespace,
    waiter: settings.waiter,
    allowUnmatchedMigrators: settings.allowUnmatchedMigrators,
  });
  const sorted = sortManifests(manifests);
  const objects = sorted.map((m) => m.object);
  const output = options.output === "yaml" ? serializeYamlStream(objects) : serializeStream(objects);
  return { output, settings, sourceType, manifests: sorted, report, skipped };
}

/** The stream Argo CD's generate expects. */
export async function generate(options: GenerateOptions = {}): Promise<string> {
  return (await generateDetailed(options)).output;
}
