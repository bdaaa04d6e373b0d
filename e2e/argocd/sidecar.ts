// The project's plugin sidecars as the stand-in runs them, built from the files the project ships: the
// plugin configurations (plugin/plugin.yaml, plugin/plugin-discovery.yaml), the image's environment
// (the ENV lines of Dockerfile.plugin), the sidecar container's env (plugin/deploy/kustomize patches) and
// the environment Kubernetes adds to every container. Commands run through localExecutor with the image's
// paths mapped onto this checkout (`node` is Node.js 24 from npm, /opt/digest-migrations/ is plugin/dist/).
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { tools } from "../../plugin/test/tools.ts";
import { CmpServer } from "./cmp-server.ts";
import { localExecutor } from "./exec.ts";
import type { Executor, LocalExecutorOptions } from "./exec.ts";
import { readPluginConfig } from "./plugin-config.ts";
import type { PluginConfig } from "./plugin-config.ts";
import { RepoServer } from "./repo-server.ts";
import type { RepoServerOptions } from "./repo-server.ts";
import type { ArgoCDVersion } from "./versions.ts";
import { V3_5 } from "./versions.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
export const NAMED_PLUGIN_FILE = path.join(ROOT, "plugin/plugin.yaml");
export const DISCOVERY_PLUGIN_FILE = path.join(ROOT, "plugin/plugin-discovery.yaml");
export const DOCKERFILE = path.join(ROOT, "Dockerfile.plugin");
export const SIDECAR_PATCH = path.join(ROOT, "plugin/deploy/kustomize/repo-server-sidecar.yaml");
export const DISCOVERY_SIDECAR_PATCH = path.join(ROOT, "plugin/deploy/kustomize/discovery/repo-server-sidecar.yaml");
/** Where the image puts the bundle, and where `npm run build` leaves it here. */
const IMAGE_PLUGIN_DIR = "/opt/digest-migrations/";
const LOCAL_PLUGIN_DIR = path.join(ROOT, "plugin/dist") + path.sep;
/** PATH of the node:24-bookworm-slim base image; helm and kubectl are in /usr/local/bin there. */
const IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The ENV instructions of a Dockerfile's last stage (KEY=value pairs, backslash continuations). */
export function dockerfileEnv(file = DOCKERFILE): Record<string, string> {
  const text = readFileSync(file, "utf8").replace(/\\\n/g, " ");
  const stages = text.split(/^FROM /m);
  const last = stages[stages.length - 1] ?? "";
  const env: Record<string, string> = {};
  for (const line of last.split("\n")) {
    const m = /^ENV\s+(.*)$/.exec(line.trim());
    if (m === null) continue;
    for (const pair of m[1]!.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
      const raw = pair[2]!;
      env[pair[1]!] = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
    }
  }
  return env;
}

interface Container {
  name: string;
  env?: Array<{ name: string; value?: string }>;
}

/** The env of a container of a strategic-merge patch of argocd-repo-server (valueFrom entries skipped). */
export function patchContainerEnv(file: string, container: string): Record<string, string> {
  const patch = parse(readFileSync(file, "utf8")) as { spec: { template: { spec: { containers: Container[] } } } };
  const c = patch.spec.template.spec.containers.find((x) => x.name === container);
  if (c === undefined) throw new Error(`${file}: no container ${container}`);
  return Object.fromEntries((c.env ?? []).flatMap((e) => (e.value === undefined ? [] : [[e.name, e.value]])));
}

/**
 * The environment argocd-cmp-server runs in: the image's ENV, Kubernetes' service variables and
 * HOSTNAME, then the container's env; PATH is the image's with this machine's helm and kubectl first.
 */
export function sidecarEnvironment(patch = SIDECAR_PATCH, container = "digest-migrations"): Record<string, string> {
  return {
    PATH: `${tools().bin}:${IMAGE_PATH}`,
    HOSTNAME: "argocd-repo-server-5c8d7f9b6d-x2x7q",
    KUBERNETES_SERVICE_HOST: "10.96.0.1",
    KUBERNETES_SERVICE_PORT: "443",
    KUBERNETES_PORT: "tcp://10.96.0.1:443",
    ...dockerfileEnv(),
    ...patchContainerEnv(patch, container),
  };
}

/** Maps the image's `node` and /opt/digest-migrations/ onto this checkout. */
export function imageArgv(argv: readonly string[]): string[] {
  return argv.map((a, i) => {
    if (i === 0 && a === "node") return process.execPath;
    return a.startsWith(IMAGE_PLUGIN_DIR) ? LOCAL_PLUGIN_DIR + a.slice(IMAGE_PLUGIN_DIR.length) : a;
  });
}

export function pluginExecutor(options: Omit<LocalExecutorOptions, "argv"> = {}): Executor {
  return localExecutor({ ...options, argv: imageArgv });
}

export interface SidecarOptions {
  version?: ArgoCDVersion;
  executor?: Executor;
  /** Extra environment for the sidecar container. */
  env?: Record<string, string>;
  workDir?: string;
}

/** The named sidecar (plugin/plugin.yaml, served as digest-migrations-v1). */
export function namedSidecar(options: SidecarOptions = {}): CmpServer {
  return sidecar(readPluginConfig(NAMED_PLUGIN_FILE), sidecarEnvironment(SIDECAR_PATCH, "digest-migrations"), options);
}

/** The optional discovery sidecar (plugin/plugin-discovery.yaml, served as digest-migrations-discovery-v1). */
export function discoverySidecar(options: SidecarOptions = {}): CmpServer {
  return sidecar(
    readPluginConfig(DISCOVERY_PLUGIN_FILE),
    sidecarEnvironment(DISCOVERY_SIDECAR_PATCH, "digest-migrations-discovery"),
    options,
  );
}

/** A sidecar with any plugin configuration (another team's plugin, an older plugin.yaml). */
export function sidecar(config: PluginConfig, env: Record<string, string>, options: SidecarOptions = {}): CmpServer {
  return new CmpServer({
    config,
    version: options.version ?? V3_5,
    sidecarEnv: { ...env, ...options.env },
    executor: options.executor ?? pluginExecutor(),
    ...(options.workDir === undefined ? {} : { workDir: options.workDir }),
  });
}

/** A repo-server with these sidecars (default: the named one and the discovery one). */
export function repoServer(
  version: ArgoCDVersion = V3_5,
  sidecars: readonly CmpServer[] = [namedSidecar({ version }), discoverySidecar({ version })],
  options: Omit<RepoServerOptions, "version" | "sidecars"> = {},
): RepoServer {
  return new RepoServer({ version, sidecars, ...options });
}
