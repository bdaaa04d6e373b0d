// The Argo CD releases whose source the stand-in follows, and what changed between them in the code paths
// a Config Management Plugin sees. Read at the tags below (the newest patch of each minor release when
// read): util/app/discovery/discovery.go, cmpserver/plugin/plugin.go, cmpserver/plugin/config.go,
// util/cmp/stream.go, util/io/files/tar.go, reposerver/repository/repository.go,
// pkg/apis/application/v1alpha1/types.go and the k8s.io/apimachinery each one pins in go.mod.
import type { StreamDecoder } from "./manifest-stream.ts";

export interface ArgoCDVersion {
  /** The tag read. */
  tag: string;
  /**
   * cmpSupports asks CheckPluginConfiguration first (v2.13 on): a plugin without discovery rules is then
   * used for a named Application without receiving the repository, and skipped unnamed. Before, the
   * repository was sent to MatchRepository, which answered (false, discovery disabled) — same outcome.
   */
  checkPluginConfiguration: boolean;
  /** environ() keeps request entries with an empty value (v3.0 on); before, they were dropped. */
  keepEmptyEnvValues: boolean;
  /** The YAMLOrJSONDecoder of the apimachinery pinned (≤ v0.32 sniffs, ≥ v0.33 falls back to YAML). */
  decoder: StreamDecoder;
  /** newEnv: the build environment entries sent, in order. */
  buildEnv: readonly BuildEnvName[];
  /** DetectConfigManagementPlugin's message for a named plugin that is not found or does not match. */
  namedNotFound: (name: string) => string;
  /** From v3.4 the last dialing or matching error is appended to the "could not find" messages. */
  wrapsLastError: boolean;
  /** GenerateManifests' wrapping of a plugin failure ("plugin sidecar failed. …" until v3.1). */
  pluginFailed: (appName: string, message: string) => string;
}

export type BuildEnvName =
  | "ARGOCD_APP_NAME"
  | "ARGOCD_APP_NAMESPACE"
  | "ARGOCD_APP_PROJECT_NAME"
  | "ARGOCD_APP_REVISION"
  | "ARGOCD_APP_REVISION_SHORT"
  | "ARGOCD_APP_REVISION_SHORT_8"
  | "ARGOCD_APP_SOURCE_REPO_URL"
  | "ARGOCD_APP_SOURCE_PATH"
  | "ARGOCD_APP_SOURCE_TARGET_REVISION";

const BASE: BuildEnvName[] = ["ARGOCD_APP_NAME", "ARGOCD_APP_NAMESPACE", "ARGOCD_APP_REVISION"];
const SOURCE: BuildEnvName[] = [
  "ARGOCD_APP_SOURCE_REPO_URL",
  "ARGOCD_APP_SOURCE_PATH",
  "ARGOCD_APP_SOURCE_TARGET_REVISION",
];

const sidecarFailed = (_app: string, message: string): string => `plugin sidecar failed. ${message}`;

const couldnt = (name: string): string =>
  `couldn't find cmp-server plugin with name ${JSON.stringify(name)} supporting the given repository`;

export const V2_6: ArgoCDVersion = {
  tag: "v2.6.15",
  checkPluginConfiguration: false,
  keepEmptyEnvValues: false,
  decoder: "sniff",
  buildEnv: [...BASE, ...SOURCE],
  // v2.6 and v2.7 format the name with %v (no quotes).
  namedNotFound: (name) => `couldn't find cmp-server plugin with name ${name} supporting the given repository`,
  wrapsLastError: false,
  pluginFailed: sidecarFailed,
};

export const V2_13: ArgoCDVersion = {
  tag: "v2.13.9",
  checkPluginConfiguration: true,
  keepEmptyEnvValues: false,
  decoder: "sniff",
  buildEnv: [...BASE, "ARGOCD_APP_REVISION_SHORT", ...SOURCE],
  namedNotFound: couldnt,
  wrapsLastError: false,
  pluginFailed: sidecarFailed,
};

export const V3_0: ArgoCDVersion = {
  tag: "v3.0.23",
  checkPluginConfiguration: true,
  keepEmptyEnvValues: true,
  decoder: "sniff",
  buildEnv: [
    "ARGOCD_APP_NAME",
    "ARGOCD_APP_NAMESPACE",
    "ARGOCD_APP_PROJECT_NAME",
    "ARGOCD_APP_REVISION",
    "ARGOCD_APP_REVISION_SHORT",
    "ARGOCD_APP_REVISION_SHORT_8",
    ...SOURCE,
  ],
  namedNotFound: couldnt,
  wrapsLastError: false,
  pluginFailed: sidecarFailed,
};

export const V3_1: ArgoCDVersion = { ...V3_0, tag: "v3.1.16", decoder: "fallback" };

export const V3_5: ArgoCDVersion = {
  ...V3_1,
  tag: "v3.5.1",
  namedNotFound: (name) =>
    `could not find cmp-server plugin with name ${JSON.stringify(name)} supporting the given repository`,
  wrapsLastError: true,
  pluginFailed: (app, message) => `CMP processing failed for application ${JSON.stringify(app)}: ${message}`,
};

/** One release per behaviour the plugin can observe; tests run against each. */
export const ARGOCD_VERSIONS: readonly ArgoCDVersion[] = [V2_6, V2_13, V3_0, V3_1, V3_5];

/** Every tag whose source was read for the stand-in (docs/how-it-works.md names them). */
export const TAGS_READ = [
  "v2.6.15",
  "v2.7.18",
  "v2.8.21",
  "v2.9.22",
  "v2.10.20",
  "v2.11.14",
  "v2.12.13",
  "v2.13.9",
  "v2.14.21",
  "v3.0.23",
  "v3.1.16",
  "v3.2.12",
  "v3.3.14",
  "v3.4.7",
  "v3.5.1",
] as const;
