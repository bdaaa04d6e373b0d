// The plugin's parameters: what the Argo CD UI announces (plugin.yaml `parameters.static` mirrors
// ANNOUNCEMENTS; a test keeps them equal) and how a value is read from the environment Argo CD gives a
// plugin. Argo CD passes an Application's `spec.source.plugin.parameters` twice: as one JSON array in
// ARGOCD_APP_PARAMETERS and as PARAM_<NAME> variables (name uppercased, other characters → `_`; arrays as
// PARAM_<NAME>_<i>, maps as PARAM_<NAME>_<KEY>). `spec.source.plugin.env` entries arrive as
// ARGOCD_ENV_<name>. Defaults chosen at install time are the sidecar's own DIGEST_MIGRATIONS_<NAME>.
import { PluginError } from "./errors.ts";

export type Env = Readonly<Record<string, string | undefined>>;

/** Argo CD's ParameterAnnouncement (reposerver/apiclient), as plugin.yaml spells it. */
export interface ParameterAnnouncement {
  name: string;
  title: string;
  tooltip: string;
  required?: boolean;
  itemType?: "string";
  collectionType?: "string" | "array" | "map";
  string?: string;
  array?: string[];
  map?: Record<string, string>;
}

export const ANNOUNCEMENTS: readonly ParameterAnnouncement[] = [
  {
    name: "waiter-image",
    title: "Waiter image",
    tooltip: "Image of the injected waiter init containers (the reconciler image). Default: set at install time.",
  },
  {
    name: "reconciler-url",
    title: "Reconciler URL",
    tooltip: "Base URL of the reconciler's waiter API, as pods reach it. Default: set at install time.",
  },
  {
    name: "waiter-token",
    title: "Waiter token",
    tooltip:
      'Set to "true" to have each waiter send its pod\'s projected service-account token, for a reconciler that checks them (--waiter-auth). Default: set at install time, else false.',
    string: "false",
  },
  {
    name: "allow-unmatched-migrators",
    title: "Allow unmatched Migrators",
    tooltip: 'Set to "true" to accept a Migrator that selects no workload of this application.',
    string: "false",
  },
  {
    name: "source-type",
    title: "Source type",
    tooltip: "auto (Chart.yaml → helm, kustomization.yaml → kustomize, else directory), directory, kustomize or helm.",
    string: "auto",
  },
  {
    name: "include",
    title: "Directory: include glob",
    tooltip:
      "Directory sources: only files whose path matches this glob (picomatch; a pattern without / matches basenames).",
  },
  {
    name: "exclude",
    title: "Directory: exclude glob",
    tooltip: "Directory sources: skip files whose path matches this glob.",
  },
  {
    name: "recurse",
    title: "Directory: recurse",
    tooltip: 'Directory sources: "true" reads subdirectories too, "false" only the top level.',
    string: "true",
  },
  {
    name: "max-file-size",
    title: "Largest manifest file",
    tooltip: "Largest single manifest file read, in bytes (suffixes Ki, Mi allowed).",
    string: "4Mi",
  },
  {
    name: "max-total-size",
    title: "Largest rendered total",
    tooltip: "Largest total of manifest files read or rendered output, in bytes (suffixes Ki, Mi allowed).",
    string: "64Mi",
  },
  {
    name: "helm-release-name",
    title: "Helm: release name",
    tooltip: "Helm sources: the release name. Default: the Application's name.",
  },
  {
    name: "helm-values-files",
    title: "Helm: values files",
    tooltip: "Helm sources: values files, relative to the application path, inside the repository.",
    collectionType: "array",
  },
  {
    name: "helm-values",
    title: "Helm: values",
    tooltip: "Helm sources: values as a YAML document, applied after the values files.",
  },
  {
    name: "helm-parameters",
    title: "Helm: parameters",
    tooltip: "Helm sources: values passed as --set key=value, applied last.",
    collectionType: "map",
  },
];

/** Install-time default variables: DIGEST_MIGRATIONS_WAITER_IMAGE etc. */
export function installEnvName(name: string): string {
  return `DIGEST_MIGRATIONS_${escaped(name)}`;
}

/** Argo CD's escaping of a parameter name into an environment variable name. */
export function escaped(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9_]/g, "_");
}

interface AppParameter {
  name: string;
  string?: string;
  array?: string[];
  map?: Record<string, string>;
}

/** Reads parameters in precedence order: Application parameter, Application plugin env, install default. */
export class ParameterSource {
  readonly #env: Env;
  readonly #json: Map<string, AppParameter>;

  constructor(env: Env) {
    this.#env = env;
    this.#json = parseAppParameters(env["ARGOCD_APP_PARAMETERS"]);
  }

  /** A string parameter, or undefined when nothing sets it. An empty value counts as unset. */
  string(name: string): string | undefined {
    const candidates = [
      this.#json.get(name)?.string,
      this.#env[`PARAM_${escaped(name)}`],
      this.#env[`ARGOCD_ENV_${escaped(name)}`],
      this.#env[installEnvName(name)],
    ];
    return candidates.find((v) => v !== undefined && v !== "");
  }

  /** An array parameter: from ARGOCD_APP_PARAMETERS, else PARAM_<NAME>_0, _1, …, else a comma list in env. */
  array(name: string): string[] {
    const fromJson = this.#json.get(name)?.array;
    if (fromJson !== undefined) return [...fromJson];
    const out: string[] = [];
    for (let i = 0; ; i++) {
      const v = this.#env[`PARAM_${escaped(name)}_${i}`];
      if (v === undefined) break;
      out.push(v);
    }
    if (out.length > 0) return out;
    const list = this.#env[`ARGOCD_ENV_${escaped(name)}`] ?? this.#env[installEnvName(name)];
    return list === undefined || list === "" ? [] : list.split(",").map((s) => s.trim());
  }

  /**
   * A map parameter, from ARGOCD_APP_PARAMETERS only: the PARAM_<NAME>_<KEY> form loses the key's spelling
   * (uppercased, `.` → `_`), which matters for Helm value paths.
   */
  map(name: string): Record<string, string> {
    return { ...(this.#json.get(name)?.map ?? {}) };
  }
}

const KNOWN = new Map(ANNOUNCEMENTS.map((a) => [a.name, a.collectionType ?? "string"]));

/** The one-line list of parameter names, for errors. */
function knownNames(): string {
  return [...KNOWN.keys()].join(", ");
}

/** An error for a parameter name this plugin does not announce (a typo would otherwise be ignored). */
export function unknownParameter(name: string, where: string): PluginError {
  return new PluginError(`${where}: "${name}" is not a parameter of this plugin (parameters: ${knownNames()})`);
}

const WHERE = "spec.source.plugin.parameters";

/**
 * Argo CD's ARGOCD_APP_PARAMETERS: the Application's spec.source.plugin.parameters as a JSON array of
 * {name, string?, array?, map?} ("null" when the plugin section has none; unset when the Application names
 * no plugin section at all). Every entry must name an announced parameter, once, with a value of the kind
 * announced (string, array or map); an entry with no value at all counts as unset.
 */
function parseAppParameters(json: string | undefined): Map<string, AppParameter> {
  const out = new Map<string, AppParameter>();
  if (json === undefined || json.trim() === "") return out;
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    throw new PluginError(`ARGOCD_APP_PARAMETERS is not JSON: ${(error as Error).message}`);
  }
  if (parsed === null) return out;
  if (!Array.isArray(parsed)) throw new PluginError("ARGOCD_APP_PARAMETERS is not a JSON array");
  for (const item of parsed as unknown[]) {
    if (typeof item !== "object" || item === null || typeof (item as { name?: unknown }).name !== "string") {
      throw new PluginError(`${WHERE}: an entry without a name`);
    }
    const p = item as AppParameter & Record<string, unknown>;
    const kind = KNOWN.get(p.name);
    if (kind === undefined) throw unknownParameter(p.name, WHERE);
    if (out.has(p.name)) throw new PluginError(`${WHERE}: "${p.name}" is given more than once`);
    const given = (["string", "array", "map"] as const).filter((k) => p[k] !== undefined);
    for (const k of given) {
      if (k !== kind) {
        throw new PluginError(
          `${WHERE}: "${p.name}" takes ${article(kind)} ${kind} (${kind}: …), not ${article(k)} ${k}`,
        );
      }
    }
    checkValue(p);
    out.set(p.name, p);
  }
  return out;
}

function article(kind: string): string {
  return kind === "array" ? "an" : "a";
}

function checkValue(p: AppParameter): void {
  const bad = (what: string): PluginError => new PluginError(`${WHERE}: "${p.name}": ${what}`);
  if (p.string !== undefined && typeof p.string !== "string") throw bad("the value is not a string");
  if (p.array !== undefined && (!Array.isArray(p.array) || p.array.some((v) => typeof v !== "string"))) {
    throw bad("the array must hold strings");
  }
  if (p.map !== undefined) {
    if (typeof p.map !== "object" || p.map === null || Array.isArray(p.map)) throw bad("the map is not an object");
    if (Object.values(p.map).some((v) => typeof v !== "string")) throw bad("the map's values must be strings");
  }
}

/** Parses a size such as 4194304, 512Ki or 4Mi. */
export function parseSize(name: string, value: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(value.trim());
  if (m?.[1] === undefined) throw new PluginError(`parameter ${name}: "${value}" is not a size (e.g. 4Mi)`);
  const unit = m[2] === "Ki" ? 1024 : m[2] === "Mi" ? 1024 ** 2 : m[2] === "Gi" ? 1024 ** 3 : 1;
  return Number(m[1]) * unit;
}

/** Parses "true"/"false" (any case). */
export function parseBoolean(name: string, value: string): boolean {
  const v = value.trim().toLowerCase();
  if (v === "true") return true;
  if (v === "false") return false;
  throw new PluginError(`parameter ${name}: "${value}" is not true or false`);
}
