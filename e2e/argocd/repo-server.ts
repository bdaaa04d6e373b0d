// A stand-in for the part of argocd-repo-server that renders an Application source through a Config
// Management Plugin sidecar, function by function after reposerver/repository/repository.go
// (GenerateManifests, GetAppSourceType, mergeSourceParameters, newEnv, getPluginEnvs, getPluginParamEnvs,
// runConfigManagementPluginSidecars, generateManifestsCMP), util/app/discovery/discovery.go
// (Discover, AppType, DetectConfigManagementPlugin, cmpSupports, matchRepositoryCMP), util/cmp/stream.go
// (SendRepoStream, GetCompressedRepoAndMetadata, toEnvEntry) and pkg/apis/application/v1alpha1/types.go
// (ApplicationSource.ExplicitType, Env.Environ/Envsubst, ApplicationSourcePluginParameters.Environ),
// read at the tags in versions.ts (v2.6.15 … v3.5.1).
//
// One request is one source: a multi-source Application asks for each of its sources on its own, so a
// plugin only ever sees the files of the source it renders.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { CmpError } from "./cmp-server.ts";
import type { AppStream, CmpServer, EnvEntry } from "./cmp-server.ts";
import { ManifestStreamError, toObjects } from "./manifest-stream.ts";
import type { KubeObject } from "./manifest-stream.ts";
import { compressRepository, inbound } from "./tgz.ts";
import { DEFAULT_APP_LABEL_KEY, track } from "./tracking.ts";
import type { TrackingMethod } from "./tracking.ts";
import type { ArgoCDVersion } from "./versions.ts";

/** spec.source.plugin.parameters[] (ApplicationSourcePluginParameter). */
export interface PluginParameter {
  name: string;
  string?: string;
  array?: string[];
  map?: Record<string, string>;
}

/** spec.source.plugin. */
export interface SourcePlugin {
  name?: string;
  env?: EnvEntry[];
  parameters?: PluginParameter[];
}

/** One entry of spec.sources (or spec.source). */
export interface ApplicationSource {
  repoURL: string;
  path: string;
  targetRevision: string;
  plugin?: SourcePlugin;
  helm?: Record<string, unknown>;
  kustomize?: Record<string, unknown>;
  directory?: Record<string, unknown>;
  chart?: string;
}

/** What the application controller asks the repo-server for (ManifestRequest), plus the checkout. */
export interface ManifestRequest {
  /** The checkout of source.repoURL at `revision` (the repo-server's git root). */
  repoRoot: string;
  revision: string;
  source: ApplicationSource;
  /** q.AppName: `<name>`, or `<namespace>_<name>` for an Application outside Argo CD's namespace. */
  appName: string;
  /** The destination namespace. */
  namespace: string;
  projectName?: string;
  /** The destination cluster's version, e.g. "1.20.2", and served API versions. */
  kubeVersion: string;
  apiVersions: readonly string[];
  /** Resource tracking; default: label before v3.0, annotation from v3.0. */
  trackingMethod?: TrackingMethod;
  appLabelKey?: string;
  /** The controller's repo-server timeout (controller.repo.server.timeout.seconds; default 60 s). */
  timeoutMs?: number;
}

export interface ManifestResponse {
  sourceType: "Plugin";
  /** The socket of the sidecar that rendered it. */
  plugin: string;
  manifests: KubeObject[];
}

/** A source that Argo CD would not hand to any plugin (Helm, Kustomize or a plain directory). */
export class NotAPluginSourceError extends Error {
  override name = "NotAPluginSourceError";
  readonly sourceType: string;
  constructor(sourceType: string) {
    super(`source type ${sourceType}: Argo CD renders it itself, no plugin is asked`);
    this.sourceType = sourceType;
  }
}

/** The error the repo-server returns, as the Application's condition shows it. */
export class ManifestGenerationError extends Error {
  override name = "ManifestGenerationError";
}

export interface RepoServerOptions {
  version: ArgoCDVersion;
  /** The sidecars whose sockets are in /home/argocd/cmp-server/plugins. */
  sidecars: readonly CmpServer[];
  /** --plugin-tar-exclude / ARGOCD_REPO_SERVER_PLUGIN_TAR_EXCLUSIONS (default none). */
  tarExcludedGlobs?: readonly string[];
}

const KUSTOMIZATION_FILES = new Set(["kustomization.yaml", "kustomization.yml", "Kustomization"]);

export class RepoServer {
  readonly version: ArgoCDVersion;
  readonly #sidecars: readonly CmpServer[];
  readonly #excluded: readonly string[];

  constructor(options: RepoServerOptions) {
    this.version = options.version;
    this.#sidecars = options.sidecars;
    this.#excluded = options.tarExcludedGlobs ?? [];
  }

  /** GenerateManifests for a plugin source. */
  async generateManifests(q: ManifestRequest): Promise<ManifestResponse> {
    const deadline = Date.now() + (q.timeoutMs ?? 60_000);
    const appPath = path.join(q.repoRoot, q.source.path);
    if (appPath !== q.repoRoot && !inbound(appPath, q.repoRoot)) {
      throw new ManifestGenerationError(`${q.source.path}: app path is outside of the repository`);
    }
    if (!existsSync(appPath) || !statSync(appPath).isDirectory()) {
      throw new ManifestGenerationError(`${q.source.path}: app path does not exist`);
    }
    const source = mergeSourceParameters(q.source, appPath, q.appName);
    const buildEnv = this.newEnv(q, source);

    // GetAppSourceType: an explicit type, else discovery (a matching plugin first, then Chart.yaml /
    // kustomization, else a directory).
    let sourceType = explicitType(source);
    if (sourceType === undefined) {
      const found = await this.detect(q.repoRoot, appPath, "", buildEnv, deadline).catch(() => undefined);
      sourceType = found !== undefined ? "Plugin" : walkType(appPath);
    }
    if (sourceType !== "Plugin") throw new NotAPluginSourceError(sourceType);

    const failed = (message: string): ManifestGenerationError =>
      new ManifestGenerationError(this.version.pluginFailed(q.appName, message));
    const env = [
      ...buildEnv,
      `KUBE_VERSION=${this.kubeVersion(q.kubeVersion)}`,
      `KUBE_API_VERSIONS=${q.apiVersions.join(",")}`,
    ];
    env.push(...pluginParamEnvs(env, source.plugin));

    let sidecar: CmpServer;
    try {
      sidecar = await this.detect(q.repoRoot, appPath, source.plugin?.name ?? "", env, deadline);
    } catch (error) {
      throw failed((error as Error).message);
    }

    let response: { manifests: string[] };
    try {
      response = await sidecar.generateManifest(this.stream(q.repoRoot, appPath, env), deadline);
    } catch (error) {
      if (error instanceof CmpError)
        throw failed(`error generating manifests in cmp: rpc error: code = Unknown desc = ${error.message}`);
      throw error;
    }
    const objects: KubeObject[] = [];
    for (const piece of response.manifests) {
      try {
        objects.push(...toObjects(piece, this.version.decoder));
      } catch (error) {
        if (error instanceof ManifestStreamError)
          throw failed(`failed to convert CMP manifests to unstructured objects: ${error.message}`);
        throw error;
      }
    }

    // Lists are flattened, empty lists dropped, and every object gets the tracking label or annotation.
    const method = q.trackingMethod ?? (this.version.tag.startsWith("v2.") ? "label" : "annotation");
    const manifests: KubeObject[] = [];
    for (const o of objects) {
      const items = (o as { items?: unknown }).items;
      let targets: KubeObject[];
      if (Array.isArray(items)) {
        targets = items.map((item) => {
          if (typeof item !== "object" || item === null || Array.isArray(item))
            throw new ManifestGenerationError("resource list item has unexpected type");
          return item as KubeObject;
        });
      } else if (items === null && !("spec" in o) && !("status" in o)) {
        targets = [];
      } else {
        targets = [o];
      }
      for (const t of targets)
        manifests.push(track(t, method, q.appName, q.namespace, q.appLabelKey ?? DEFAULT_APP_LABEL_KEY));
    }
    return { sourceType: "Plugin", plugin: sidecar.socketName, manifests };
  }

  /** newEnv: the build environment, as NAME=value (Env.Environ keeps named entries with empty values). */
  newEnv(q: ManifestRequest, source: ApplicationSource): string[] {
    const values: Record<string, string> = {
      ARGOCD_APP_NAME: q.appName,
      ARGOCD_APP_NAMESPACE: q.namespace,
      ARGOCD_APP_PROJECT_NAME: q.projectName ?? "",
      ARGOCD_APP_REVISION: q.revision,
      ARGOCD_APP_REVISION_SHORT: q.revision.slice(0, 7),
      ARGOCD_APP_REVISION_SHORT_8: q.revision.slice(0, 8),
      ARGOCD_APP_SOURCE_REPO_URL: source.repoURL,
      ARGOCD_APP_SOURCE_PATH: source.path,
      ARGOCD_APP_SOURCE_TARGET_REVISION: source.targetRevision,
    };
    return this.version.buildEnv.map((name) => `${name}=${values[name] ?? ""}`);
  }

  /** KUBE_VERSION: text.SemVer (drop "+") until v3.0; parseKubeVersion (k8s version.ParseGeneric) from v3.1. */
  kubeVersion(raw: string): string {
    if (this.version.decoder === "sniff") return raw.replaceAll("+", "");
    if (raw === "") return "";
    const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(raw.trim());
    if (m === null) throw new ManifestGenerationError(`could not parse kubernetes version ${raw}`);
    return `${m[1]}.${m[2]}.${m[3] ?? "0"}`;
  }

  /** GetCompressedRepoAndMetadata: the whole repository from its root, the app path relative to it. */
  stream(repoRoot: string, appPath: string, env: readonly string[]): AppStream {
    const archive = compressRepository(repoRoot, this.#excluded);
    return {
      metadata: {
        appName: path.basename(appPath),
        appRelPath: path.relative(repoRoot, appPath) || ".",
        env: toEnvEntry(env),
        checksum: archive.checksum,
        size: archive.tgz.length,
      },
      tgz: archive.tgz,
    };
  }

  /** DetectConfigManagementPlugin: the named plugin's socket, or the first socket (by name) that matches. */
  async detect(
    repoRoot: string,
    appPath: string,
    pluginName: string,
    env: readonly string[],
    deadline: number,
  ): Promise<CmpServer> {
    let lastError: Error | undefined;
    const wrap = (message: string): string =>
      this.version.wrapsLastError && lastError ? `${message}: ${lastError.message}` : message;
    if (pluginName !== "") {
      const sidecar = this.#sidecars.find((s) => s.socketName === `${pluginName}.sock`);
      if (sidecar === undefined) {
        lastError = new Error(`error dialing to cmp-server for plugin ${pluginName}.sock: no such socket`);
      } else {
        const r = await this.cmpSupports(sidecar, repoRoot, appPath, env, true, deadline);
        if (r.supported) return sidecar;
        lastError = r.error;
      }
      throw new Error(wrap(this.version.namedNotFound(pluginName)));
    }
    for (const sidecar of [...this.#sidecars].sort((a, b) => (a.socketName < b.socketName ? -1 : 1))) {
      const r = await this.cmpSupports(sidecar, repoRoot, appPath, env, false, deadline);
      if (r.supported) return sidecar;
      lastError = r.error ?? lastError;
    }
    throw new Error(wrap("could not find plugin supporting the given repository"));
  }

  /** cmpSupports: whether this sidecar serves the app (named: the plugin was asked for by name). */
  async cmpSupports(
    sidecar: CmpServer,
    repoRoot: string,
    appPath: string,
    env: readonly string[],
    named: boolean,
    deadline: number,
  ): Promise<{ supported: boolean; error?: Error }> {
    if (this.version.checkPluginConfiguration && !sidecar.checkPluginConfiguration().isDiscoveryConfigured) {
      // v2.13 on: no discovery rules — used when named, skipped otherwise, the repository is not sent.
      return { supported: named };
    }
    let match: { isSupported: boolean; isDiscoveryEnabled: boolean };
    try {
      match = await sidecar.matchRepository(this.stream(repoRoot, appPath, env), deadline);
    } catch (error) {
      return {
        supported: false,
        error: new Error(
          `error checking repository support for plugin ${sidecar.socketName}: ${(error as Error).message}`,
        ),
      };
    }
    if (match.isSupported) return { supported: true };
    // Argo CD's rule: a named plugin is used without a match only when it has no discovery rules at all.
    return { supported: !match.isDiscoveryEnabled && named };
  }
}

/** toEnvEntry: NAME=value strings as entries (split at the first "="). */
export function toEnvEntry(env: readonly string[]): EnvEntry[] {
  return env.flatMap((e) => {
    const eq = e.indexOf("=");
    return eq < 0 ? [] : [{ name: e.slice(0, eq), value: e.slice(eq + 1) }];
  });
}

/** os.Expand as Env.Envsubst uses it: $VAR and ${VAR}; "$$" is "$"; an unknown name is empty. */
export function envsubst(s: string, vars: Readonly<Record<string, string>>): string {
  return s.replace(
    /\$(?:\{([^}]*)\}|([A-Za-z0-9_]+)|([*#$@!?\-0-9]))/g,
    (_m, braced?: string, plain?: string, special?: string) => {
      const name = braced ?? plain ?? special ?? "";
      if (name === "$") return "$";
      return vars[name] ?? "";
    },
  );
}

/** ApplicationSourcePluginParameter.MarshalJSON: keys in encoding/json's order (sorted), empty collections kept. */
function parameterJson(p: PluginParameter): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (p.array !== undefined) out["array"] = p.array;
  if (p.map !== undefined) out["map"] = Object.fromEntries(Object.entries(p.map).sort(([a], [b]) => (a < b ? -1 : 1)));
  out["name"] = p.name;
  if (p.string !== undefined) out["string"] = p.string;
  return out;
}

/** The escaping of parameter names and map keys into variable names (types.go escaped). */
export function escaped(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9_]/g, "_");
}

/**
 * getPluginParamEnvs: ARGOCD_ENV_<name> for spec.source.plugin.env (values expanded against the build
 * environment), then ApplicationSourcePluginParameters.Environ: ARGOCD_APP_PARAMETERS (the JSON of the
 * parameters; "null" when there are none) and PARAM_<NAME>, PARAM_<NAME>_<i>, PARAM_<NAME>_<KEY>. Nothing
 * at all without a plugin section. (Map keys come out of a Go map, in no fixed order; here sorted.)
 */
export function pluginParamEnvs(buildEnv: readonly string[], plugin: SourcePlugin | undefined): string[] {
  if (plugin === undefined) return [];
  const vars = Object.fromEntries(toEnvEntry(buildEnv).map((e) => [e.name, e.value]));
  const out: string[] = [];
  for (const e of plugin.env ?? []) out.push(`ARGOCD_ENV_${e.name}=${envsubst(e.value, vars)}`);
  const params = plugin.parameters;
  out.push(`ARGOCD_APP_PARAMETERS=${params === undefined ? "null" : JSON.stringify(params.map(parameterJson))}`);
  for (const p of params ?? []) {
    const base = `PARAM_${escaped(p.name)}`;
    if (p.string !== undefined) out.push(`${base}=${p.string}`);
    for (const [k, v] of Object.entries(p.map ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)))
      out.push(`${base}_${escaped(k)}=${v}`);
    (p.array ?? []).forEach((v, i) => out.push(`${base}_${i}=${v}`));
  }
  return out;
}

/** ApplicationSource.ExplicitType. */
export function explicitType(source: ApplicationSource): string | undefined {
  const types = [
    source.kustomize !== undefined ? "Kustomize" : undefined,
    source.helm !== undefined ? "Helm" : undefined,
    source.directory !== undefined ? "Directory" : undefined,
    source.plugin !== undefined ? "Plugin" : undefined,
  ].filter((x): x is string => x !== undefined);
  if (types.length > 1)
    throw new ManifestGenerationError(
      `error getting app source type: multiple application sources defined: ${types.join(",")}`,
    );
  return types[0];
}

/** discovery.Discover's walk: any Chart.yaml → Helm, any kustomization → Kustomize, else Directory. */
function walkType(appPath: string): string {
  let helm = false;
  let kustomize = false;
  const visit = (dir: string): void => {
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      if (d.isDirectory()) visit(path.join(dir, d.name));
      else if (path.relative(appPath, dir) === "") {
        if (d.name.endsWith("Chart.yaml")) helm = true;
        if (KUSTOMIZATION_FILES.has(d.name)) kustomize = true;
      }
    }
  };
  visit(appPath);
  return kustomize ? "Kustomize" : helm ? "Helm" : "Directory";
}

/** RFC 7386 JSON merge patch (jsonpatch.MergePatch). */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== "object" || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    typeof target === "object" && target !== null && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/**
 * mergeSourceParameters: `.argocd-source.yaml`, then `.argocd-source-<appName>.yaml`, in the app's
 * directory, merged into the source as JSON merge patches (what Argo CD Image Updater's git write-back
 * writes); repoURL, path, targetRevision and chart always stay the Application's.
 */
export function mergeSourceParameters(source: ApplicationSource, appPath: string, appName: string): ApplicationSource {
  let merged: unknown = structuredClone(source);
  for (const file of [".argocd-source.yaml", ...(appName === "" ? [] : [`.argocd-source-${appName}.yaml`])]) {
    const full = path.join(appPath, file);
    if (!existsSync(full) || statSync(full).isDirectory()) continue;
    let patch: unknown;
    try {
      patch = parse(readFileSync(full, "utf8")) as unknown;
    } catch (error) {
      throw new ManifestGenerationError(`error while parsing source parameters: ${full}: ${(error as Error).message}`);
    }
    merged = mergePatch(merged, patch);
  }
  const result = merged as ApplicationSource;
  result.repoURL = source.repoURL;
  result.path = source.path;
  result.targetRevision = source.targetRevision;
  if (source.chart === undefined) delete result.chart;
  else result.chart = source.chart;
  return result;
}
