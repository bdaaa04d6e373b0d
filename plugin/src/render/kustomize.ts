// Kustomize sources, built as Argo CD builds them (`kustomize build <path>`), with `kubectl kustomize` as a
// fallback when no kustomize binary is on PATH. Never passes --enable-alpha-plugins, --enable-exec or
// --enable-helm, so no code from the repository runs; `--load-restrictor LoadRestrictionsRootOnly` keeps
// every file a kustomization loads inside its own root.
import { PluginError } from "../errors.ts";
import type { Manifest } from "../manifests.ts";
import { manifestsFrom } from "../manifests.ts";
import type { Env } from "../parameters.ts";
import type { Settings } from "../settings.ts";
import { assertNoEscapingSymlinks } from "../source/files.ts";
import { ManifestSyntaxError, parseYamlStream } from "../yaml-io.ts";
import { findOnPath, run, withScratch } from "./exec.ts";

export const KUSTOMIZATION_FILES = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

export async function renderKustomize(settings: Settings, env: Env): Promise<Manifest[]> {
  await assertNoEscapingSymlinks(settings.dir, settings.boundary);
  const kustomize = await findOnPath("kustomize", env);
  const kubectl = kustomize === undefined ? await findOnPath("kubectl", env) : undefined;
  const file = kustomize ?? kubectl;
  if (file === undefined) throw new PluginError("kustomization found but neither kustomize nor kubectl is on PATH");
  const args = [
    ...(kustomize === undefined ? ["kustomize"] : ["build"]),
    ".",
    "--load-restrictor",
    "LoadRestrictionsRootOnly",
  ];
  const output = await withScratch(env["PATH"] ?? "", (scratch) =>
    run(file, args, {
      cwd: settings.dir,
      env: scratch.env,
      timeoutMs: settings.renderTimeoutMs,
      maxOutput: settings.maxTotalSize,
    }),
  );
  const origin = kustomize === undefined ? "kubectl kustomize output" : "kustomize build output";
  try {
    return manifestsFrom(origin, parseYamlStream(output));
  } catch (error) {
    if (error instanceof ManifestSyntaxError) throw new PluginError(`${origin}:${error.line}: ${error.message}`);
    throw error;
  }
}
