// A ConfigManagementPlugin file as argocd-cmp-server reads it: cmpserver/plugin/config.go (PluginConfig,
// ReadPluginConfig, ValidatePluginConfig, Address; Discover.IsDefined from v2.11) and
// cmd/argocd-cmp-server (--config-dir-path, default /home/argocd/cmp-server/config/, file plugin.yaml),
// read in v2.6.15, v2.14.21 and v3.5.1. The same rules in every version read: metadata.name non-empty,
// kind ConfigManagementPlugin, spec.generate.command non-empty; discovery optional.
import { readFileSync } from "node:fs";
import { parse } from "yaml";

export interface Command {
  command?: string[];
  args?: string[];
}

export interface PluginConfig {
  apiVersion?: string;
  kind: string;
  metadata: { name: string };
  spec: {
    version?: string;
    init?: Command;
    generate: Command;
    discover?: { fileName?: string; find?: Command & { glob?: string } };
    parameters?: { static?: unknown[]; dynamic?: Command };
    preserveFileMode?: boolean;
    provideGitCreds?: boolean;
  };
}

/** ReadPluginConfig + ValidatePluginConfig, with Argo CD's messages. */
export function readPluginConfig(file: string): PluginConfig {
  return validatePluginConfig(parse(readFileSync(file, "utf8")) as unknown, file);
}

export function validatePluginConfig(value: unknown, where = "plugin.yaml"): PluginConfig {
  const config = (value ?? {}) as Partial<PluginConfig>;
  if (!config.metadata?.name) {
    throw new Error(`${where}: invalid plugin configuration file. metadata.name should be non-empty`);
  }
  if (config.kind !== "ConfigManagementPlugin") {
    throw new Error(
      `${where}: invalid plugin configuration file. kind should be ConfigManagementPlugin, found ${config.kind ?? ""}`,
    );
  }
  if (!config.spec?.generate?.command?.length) {
    throw new Error(`${where}: invalid plugin configuration file. spec.generate command should be non-empty`);
  }
  return config as PluginConfig;
}

/**
 * The socket's file name, which is the name an Application gives in spec.source.plugin.name:
 * `<metadata.name>-<spec.version>`, or `<metadata.name>` without a version (PluginConfig.Address).
 */
export function servedName(config: PluginConfig): string {
  return config.spec.version ? `${config.metadata.name}-${config.spec.version}` : config.metadata.name;
}

/** Discover.IsDefined / Service.isDiscoveryConfigured: fileName, find.glob or find.command set. */
export function isDiscoveryConfigured(config: PluginConfig): boolean {
  const d = config.spec.discover;
  return Boolean(d?.fileName || d?.find?.glob || d?.find?.command?.length);
}
