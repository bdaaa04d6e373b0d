// One Argo CD sync of an application that uses the plugin, without Argo CD: the repo-server stand-in
// (e2e/argocd/repo-server.ts) sends the application's repository to the plugin's sidecar stand-in
// (e2e/argocd/cmp-server.ts, configured by the shipped plugin/plugin.yaml), which runs the bundled
// plugin's `generate` with the sidecar's own environment plus the request's entries, as Argo CD does; the
// application controller applies the output (see apply.ts). With `pluginImage`, the sidecar is the plugin
// image itself: its plugin.yaml, its environment, and generate run inside it (argocd/plugin-container.ts).
//
//   const result = await sync(MANIFESTS_DIR, { kubeconfig, namespace, waiterImage, reconcilerUrl });
import type { KubeObject } from "@digest-migrations/shared";
import { ManifestGenerationError } from "../argocd/repo-server.ts";
import type { ApplicationSource, ManifestRequest, PluginParameter } from "../argocd/repo-server.ts";
import { splitYamlToString, toObjects } from "../argocd/manifest-stream.ts";
import { imageSidecar } from "../argocd/plugin-container.ts";
import { namedSidecar, repoServer } from "../argocd/sidecar.ts";
import type { TrackingMethod } from "../argocd/tracking.ts";
import type { ArgoCDVersion } from "../argocd/versions.ts";
import { V3_5 } from "../argocd/versions.ts";
import { applyObjects } from "./apply.ts";
import type { AppliedObject } from "./apply.ts";

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
];
/** The name the named sidecar serves (plugin/plugin.yaml). */
export const PLUGIN_NAME = "digest-migrations-v1";
/** A git revision for the build environment (ARGOCD_APP_REVISION). */
export const REVISION = "3f2a9c1d4b5e6f708192a3b4c5d6e7f809102a3b";

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
  /** More string parameters (name → value) in spec.source.plugin.parameters. */
  parameters?: Record<string, string>;
  /** spec.source.plugin.env entries (name → value), passed as ARGOCD_ENV_<name>. */
  pluginEnv?: Record<string, string>;
  /** The Argo CD release whose behaviour the stand-in follows (default the newest read). */
  argocd?: ArgoCDVersion;
  trackingMethod?: TrackingMethod;
  /** The plugin image (its local buildah name) to run the sidecar from; default the bundle on this machine. */
  pluginImage?: string;
  log?: (line: string) => void;
}

export interface SyncResult {
  /** What Argo CD made of generate's output (tracking applied). */
  rendered: KubeObject[];
  applied: AppliedObject[];
  /** Milliseconds spent generating and in applying. */
  generateMs: number;
  applyMs: number;
}

/** Manifest generation failed: the message is what the Application's condition would show. */
export class GenerateError extends Error {
  override name = "GenerateError";
}

/** The Application's source: the plugin named, the waiter image and reconciler URL as parameters. */
export function pluginSource(
  opts: Pick<SyncOptions, "waiterImage" | "reconcilerUrl" | "parameters" | "pluginEnv">,
): ApplicationSource {
  // A parameter given in opts.parameters replaces the default of the same name (Argo CD refuses a name twice).
  const values = { "waiter-image": opts.waiterImage, "reconciler-url": opts.reconcilerUrl, ...opts.parameters };
  const parameters: PluginParameter[] = Object.entries(values).map(([name, value]) => ({ name, string: value }));
  return {
    repoURL: "https://git.example/team/shop.git",
    path: ".",
    targetRevision: "main",
    plugin: {
      name: PLUGIN_NAME,
      parameters,
      ...(opts.pluginEnv ? { env: Object.entries(opts.pluginEnv).map(([name, value]) => ({ name, value })) } : {}),
    },
  };
}

/** The repo-server request for `appDir` as the root of its repository. */
export function manifestRequest(appDir: string, opts: Omit<SyncOptions, "kubeconfig" | "log">): ManifestRequest {
  return {
    repoRoot: appDir,
    revision: REVISION,
    source: pluginSource(opts),
    appName: opts.appName ?? appDir.split("/").filter(Boolean).pop() ?? "app",
    namespace: opts.namespace,
    projectName: "default",
    kubeVersion: KUBE_VERSION,
    apiVersions: KUBE_API_VERSIONS,
    ...(opts.trackingMethod ? { trackingMethod: opts.trackingMethod } : {}),
  };
}

/** Manifest generation for `appDir` through the repo-server and the named sidecar stand-ins. */
export async function generate(appDir: string, opts: Omit<SyncOptions, "kubeconfig" | "log">): Promise<KubeObject[]> {
  const version = opts.argocd ?? V3_5;
  const sidecar = opts.pluginImage ? await imageSidecar(opts.pluginImage, { version }) : namedSidecar({ version });
  const server = repoServer(version, [sidecar]);
  try {
    const response = await server.generateManifests(manifestRequest(appDir, opts));
    return response.manifests as KubeObject[];
  } catch (error) {
    if (error instanceof ManifestGenerationError) throw new GenerateError(error.message, { cause: error });
    throw error;
  }
}

/** Reads a saved generate output as Argo CD v2.6 … v3.0 read it (the strictest of the decoders). */
export function parseStream(text: string): KubeObject[] {
  try {
    return splitYamlToString(text, "sniff").flatMap((piece) => toObjects(piece, "sniff")) as KubeObject[];
  } catch (error) {
    throw new GenerateError(`plugin output: ${(error as Error).message}`, { cause: error });
  }
}

/** generate, then apply every object in sync-wave order. */
export async function sync(appDir: string, opts: SyncOptions): Promise<SyncResult> {
  const t0 = Date.now();
  const rendered = await generate(appDir, opts);
  const t1 = Date.now();
  const applied = await applyObjects(opts.kubeconfig, rendered, opts.namespace, opts.log);
  return { rendered, applied, generateMs: t1 - t0, applyMs: Date.now() - t1 };
}
