// One Argo CD sync of an application that uses the plugin, without Argo CD: the repo-server runs
// the plugin's `generate` in the application's directory with the CMP environment, and the
// application controller applies the output (see apply.ts).
//
//   const result = await sync(MANIFESTS_DIR, { kubeconfig, namespace, waiterImage, reconcilerUrl });
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import type { KubeObject } from "@digest-migrations/shared";
import { runInPluginImage } from "../argocd/plugin-container.ts";
import { applyObjects } from "./apply.ts";
import type { AppliedObject } from "./apply.ts";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
/** The plugin as the sidecar image ships it (built by `npm run build`). */
export const PLUGIN_BUNDLE = path.join(repoRoot, "plugin/dist/digest-migrations-plugin.mjs");

/** What the control plane reports, as Argo CD passes it (KUBE_VERSION is `major.minor.patch`). */
export const KUBE_VERSION = "1.20.2";
export const KUBE_API_VERSIONS = [
  "v1",
  "apps/v1",
  "batch/v1",
  "batch/v1beta1",
  "coordination.k8s.io/v1",
  "rbac.authorization.k8s.io/v1",
  "apiextensions.k8s.io/v1",
  "migrations.coderanger.net/v1beta1",
].join(",");

export interface SyncOptions {
  /** Admin kubeconfig (Argo CD's cluster credentials). */
  kubeconfig: string;
  /** The Application's destination namespace. */
  namespace: string;
  /** ARGOCD_APP_NAME (default: the directory's name). */
  appName?: string;
  /** Plugin parameters `waiter-image` and `reconciler-url` (spec.source.plugin.parameters). */
  waiterImage: string;
  reconcilerUrl: string;
  /** More plugin parameters (name → value), passed as PARAM_<NAME> and in ARGOCD_APP_PARAMETERS. */
  parameters?: Record<string, string>;
  /** spec.source.plugin.env entries, passed as ARGOCD_ENV_<name>. */
  pluginEnv?: Record<string, string>;
  /** Run generate inside this plugin image (its local buildah name), as the sidecar does; default:
   *  the bundle on this machine. */
  pluginImage?: string;
  log?: (line: string) => void;
}

export interface SyncResult {
  /** What generate printed, parsed. */
  rendered: KubeObject[];
  applied: AppliedObject[];
  /** Milliseconds spent in generate and in applying. */
  generateMs: number;
  applyMs: number;
}

export class GenerateError extends Error {
  override name = "GenerateError";
}

/** Argo CD's escaping of a parameter name into an environment variable (PARAM_<NAME>). */
function paramEnvName(name: string): string {
  return `PARAM_${name.toUpperCase().replace(/[^A-Z0-9_]/g, "_")}`;
}

/** The entries the repo-server adds to the sidecar's environment for a CMP's generate command. */
export function pluginEnvironment(appDir: string, opts: SyncOptions): Record<string, string> {
  const params: Record<string, string> = {
    "waiter-image": opts.waiterImage,
    "reconciler-url": opts.reconcilerUrl,
    ...opts.parameters,
  };
  const env: Record<string, string> = {
    ARGOCD_APP_NAME: opts.appName ?? path.basename(appDir),
    ARGOCD_APP_NAMESPACE: opts.namespace,
    ARGOCD_APP_REVISION: "0000000000000000000000000000000000000000",
    ARGOCD_APP_SOURCE_REPO_URL: "https://git.example/team/shop.git",
    ARGOCD_APP_SOURCE_PATH: path.basename(appDir),
    ARGOCD_APP_SOURCE_TARGET_REVISION: "main",
    KUBE_VERSION,
    KUBE_API_VERSIONS,
    ARGOCD_APP_PARAMETERS: JSON.stringify(Object.entries(params).map(([name, value]) => ({ name, string: value }))),
  };
  for (const [name, value] of Object.entries(params)) env[paramEnvName(name)] = value;
  for (const [name, value] of Object.entries(opts.pluginEnv ?? {})) env[`ARGOCD_ENV_${name}`] = value;
  return env;
}

/** The command plugin.yaml's generate runs, inside the plugin image. */
export const PLUGIN_GENERATE = ["node", "/opt/digest-migrations/digest-migrations-plugin.mjs", "generate"];

/** Runs `generate` inside the plugin image with the repository (appDir's parent) mounted. */
export async function runGenerateInImage(image: string, appDir: string, env: Record<string, string>): Promise<string> {
  const r = await runInPluginImage(image, {
    repoDir: path.dirname(appDir),
    appPath: path.basename(appDir),
    argv: PLUGIN_GENERATE,
    env,
    timeoutMs: 90_000,
  });
  if (r.code === 0) return r.stdout;
  throw new GenerateError(
    `plugin generate in ${appDir} (image ${image}) failed (${r.timedOut ? "deadline exceeded" : `exit ${r.code}`}): ${r.stderr.trim()}`,
  );
}

/** Runs the bundled plugin's `generate` in `appDir` on this machine; resolves with stdout. */
export function runGenerate(appDir: string, env: Record<string, string>, bundle = PLUGIN_BUNDLE): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bundle, "generate"], {
      cwd: appDir,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", (e) => reject(new GenerateError(`running ${bundle} generate: ${e.message}`)));
    child.on("close", (code, signal) => {
      const stderr = Buffer.concat(err).toString("utf8").trim();
      if (code === 0) resolve(Buffer.concat(out).toString("utf8"));
      else reject(new GenerateError(`plugin generate in ${appDir} failed (${signal ?? `exit ${code}`}): ${stderr}`));
    });
  });
}

/** Parses generate's output stream (JSON documents separated by `---`). */
export function parseStream(text: string): KubeObject[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new GenerateError(`plugin output: ${doc.errors[0]?.message ?? "bad YAML"}`);
      return doc.toJS() as unknown;
    })
    .filter((o): o is KubeObject => typeof o === "object" && o !== null);
}

/** generate, then apply every object in sync-wave order. */
export async function sync(appDir: string, opts: SyncOptions): Promise<SyncResult> {
  const t0 = Date.now();
  const env = pluginEnvironment(appDir, opts);
  const output = opts.pluginImage
    ? await runGenerateInImage(opts.pluginImage, appDir, env)
    : await runGenerate(appDir, env);
  const rendered = parseStream(output);
  const t1 = Date.now();
  const applied = await applyObjects(opts.kubeconfig, rendered, opts.namespace, opts.log);
  return { rendered, applied, generateMs: t1 - t0, applyMs: Date.now() - t1 };
}
