// Everything one generate run needs, resolved once from Argo CD's environment (see parameters.ts) and the
// directory Argo CD runs the plugin in, so the rest of the pipeline never reads process.env.
import path from "node:path";
import { WAITER_API_PORT } from "@digest-migrations/shared";
import type { WaiterSettings } from "@digest-migrations/shared";
import { PluginError } from "./errors.ts";
import { ANNOUNCEMENTS, ParameterSource, parseBoolean, parseSize } from "./parameters.ts";
import type { Env } from "./parameters.ts";

export type SourceType = "directory" | "kustomize" | "helm";

/**
 * The default limit of one helm/kustomize run. Argo CD stops generate itself at the repo-server request's
 * deadline (controller.repo.server.timeout.seconds, 60 s by default, less 100 ms: cmpserver/plugin/plugin.go)
 * by killing its process group, which leaves only "signal: killed" in the UI; below that, the plugin's own
 * limit fires first and says which tool timed out.
 */
export const DEFAULT_RENDER_TIMEOUT_MS = 45_000;

/** Used when neither the Application nor the installation chooses (the reconciler's published defaults). */
export const BUILTIN_DEFAULTS = {
  waiterImage: "ghcr.io/digest-migrations/reconciler:0.1.0",
  reconcilerUrl: `http://digest-migrations.digest-migrations-system.svc:${WAITER_API_PORT}`,
} as const;

export interface Settings {
  /** The application's source directory (Argo CD's working directory for generate). */
  dir: string;
  /** Symlinks and values files must stay inside this directory: the repository root when known. */
  boundary: string;
  sourceType: SourceType | "auto";
  /** Argo CD's ARGOCD_APP_NAME without the `<namespace>_` prefix of apps in any namespace. */
  appName: string;
  /** The Application's destination namespace: the namespace of objects that name none. */
  namespace: string;
  kubeVersion: string | undefined;
  apiVersions: string[];
  waiter: WaiterSettings;
  allowUnmatchedMigrators: boolean;
  include: string | undefined;
  exclude: string | undefined;
  recurse: boolean;
  maxFileSize: number;
  maxTotalSize: number;
  helm: { releaseName: string; valuesFiles: string[]; values: string | undefined; parameters: Record<string, string> };
  /** Wall-clock limit for one helm/kustomize run, in milliseconds. */
  renderTimeoutMs: number;
}

function announcedDefault(name: string): string {
  const found = ANNOUNCEMENTS.find((a) => a.name === name)?.string;
  if (found === undefined) throw new Error(`no announced default for parameter ${name}`);
  return found;
}

/** Resolves settings for a run in `dir` (absolute or relative to the process's cwd) with environment `env`. */
export function resolveSettings(dir: string, env: Env): Settings {
  const params = new ParameterSource(env);
  const absDir = path.resolve(dir);
  const sourceType = params.string("source-type") ?? announcedDefault("source-type");
  if (!["auto", "directory", "kustomize", "helm"].includes(sourceType)) {
    throw new PluginError(`parameter source-type: "${sourceType}" is not auto, directory, kustomize or helm`);
  }
  const appName = instanceName(env["ARGOCD_APP_NAME"] ?? "") || path.basename(absDir);
  const timeout = env["DIGEST_MIGRATIONS_RENDER_TIMEOUT_SECONDS"];
  return {
    dir: absDir,
    boundary: repositoryRoot(absDir, env["ARGOCD_APP_SOURCE_PATH"]),
    sourceType: sourceType as Settings["sourceType"],
    appName,
    namespace: env["ARGOCD_APP_NAMESPACE"] ?? "",
    kubeVersion: nonEmpty(env["KUBE_VERSION"]),
    apiVersions: (env["KUBE_API_VERSIONS"] ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== ""),
    waiter: {
      image: params.string("waiter-image") ?? BUILTIN_DEFAULTS.waiterImage,
      apiUrl: params.string("reconciler-url") ?? BUILTIN_DEFAULTS.reconcilerUrl,
      token: parseBoolean("waiter-token", params.string("waiter-token") ?? announcedDefault("waiter-token")),
    },
    allowUnmatchedMigrators: parseBoolean(
      "allow-unmatched-migrators",
      params.string("allow-unmatched-migrators") ?? announcedDefault("allow-unmatched-migrators"),
    ),
    include: params.string("include"),
    exclude: params.string("exclude"),
    recurse: parseBoolean("recurse", params.string("recurse") ?? announcedDefault("recurse")),
    maxFileSize: parseSize("max-file-size", params.string("max-file-size") ?? announcedDefault("max-file-size")),
    maxTotalSize: parseSize("max-total-size", params.string("max-total-size") ?? announcedDefault("max-total-size")),
    helm: {
      releaseName: params.string("helm-release-name") ?? appName,
      valuesFiles: params.array("helm-values-files"),
      values: params.string("helm-values"),
      parameters: params.map("helm-parameters"),
    },
    renderTimeoutMs:
      timeout === undefined
        ? DEFAULT_RENDER_TIMEOUT_MS
        : parseSize("DIGEST_MIGRATIONS_RENDER_TIMEOUT_SECONDS", timeout) * 1000,
  };
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

/** Argo CD names apps outside its own namespace `<namespace>_<name>`; Helm wants only the name. */
function instanceName(appName: string): string {
  const i = appName.indexOf("_");
  return i < 0 ? appName : appName.slice(i + 1);
}

/**
 * Argo CD sends the repository (from its root) and runs the plugin in `<root>/<ARGOCD_APP_SOURCE_PATH>`,
 * so the root is the working directory minus that path. Without a consistent source path the
 * application directory itself is the boundary.
 */
function repositoryRoot(dir: string, sourcePath: string | undefined): string {
  if (sourcePath === undefined) return dir;
  const rel = path.normalize(sourcePath).replace(/^(\.\/)+|\/+$/g, "");
  if (rel === "" || rel === ".") return dir;
  if (rel.startsWith("..") || path.isAbsolute(rel)) return dir;
  if (!dir.endsWith(path.sep + rel)) return dir;
  return dir.slice(0, dir.length - rel.length - 1) || path.sep;
}
