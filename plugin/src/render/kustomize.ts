// Kustomize sources, built as Argo CD builds them (`kustomize build <path>`), with `kubectl kustomize` as a
// fallback when no kustomize binary is on PATH. Never passes --enable-alpha-plugins, --enable-exec or
// --enable-helm, so no code from the repository runs; `--load-restrictor LoadRestrictionsRootOnly` keeps
// every file a kustomization loads inside its own root. The output is read by output.ts.
import { PluginError } from "../errors.ts";
import type { Env } from "../parameters.ts";
import type { Settings } from "../settings.ts";
import { assertNoEscapingSymlinks } from "../source/files.ts";
import { findOnPath, run, withScratch } from "./exec.ts";
import type { RendererOutput } from "./exec.ts";

export const KUSTOMIZATION_FILES = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/** Runs the build; the process is already running when this returns (every step before it is synchronous). */
export async function runKustomize(settings: Settings, env: Env): Promise<RendererOutput> {
  assertNoEscapingSymlinks(settings.dir, settings.boundary);
  const kustomize = findOnPath("kustomize", env);
  const kubectl = kustomize === undefined ? findOnPath("kubectl", env) : undefined;
  const file = kustomize ?? kubectl;
  if (file === undefined) throw new PluginError("kustomization found but neither kustomize nor kubectl is on PATH");
  const args = [
    ...(kustomize === undefined ? ["kustomize"] : ["build"]),
    ".",
    "--load-restrictor",
    "LoadRestrictionsRootOnly",
  ];
  const origin = kustomize === undefined ? "kubectl kustomize output" : "kustomize build output";
  return withScratch(env["PATH"] ?? "", async (scratch) => ({
    output: await run(file, args, {
      cwd: settings.dir,
      env: scratch.env,
      timeoutMs: settings.renderTimeoutMs,
      maxOutput: settings.maxTotalSize,
    }),
    origin,
  }));
}
