// Wiring: every Migrator gates the workloads whose pods it selects. For each Migrator (from the sources,
// or generated from a workload annotation) and each workload in the same namespace whose pod template
// labels the Migrator's spec.selector matches, the waiter init container is put first in the template's
// initContainers (replacing one of the same name, so rendering twice changes nothing), unless the workload
// or its pod template opts out with `migrations.coderanger.net/no-wait: "true"`.
//
// Sync waves: Argo CD applies lower waves first and waits for them to be healthy, and the waiter asks the
// reconciler about its Migrator, so a Migrator must exist before its workloads' pods start. The rule:
// a Migrator's wave is one less than the lowest wave (argocd.argoproj.io/sync-wave, default 0) of the
// workloads it selects; a wave the Migrator already has is kept when it is lower than that. Workloads'
// waves are never changed; a Migrator that selects nothing keeps its annotations as they are.
import {
  ANNOTATIONS,
  API_VERSION,
  GROUP,
  JobBuildError,
  KIND,
  WAITER_TOKEN_VOLUME,
  compileSelector,
  gatedContainer,
  groupOf,
  isWorkload,
  migratorSpecProblem,
  podTemplateOf,
  validateSelector,
  waiterContainerName,
  waiterInitContainer,
  waiterTokenVolume,
} from "@digest-migrations/shared";
import type { Container, KubeObject, Migrator, PodTemplateSpec, WaiterSettings } from "@digest-migrations/shared";
import { PluginError } from "./errors.ts";
import { generateMigrators } from "./generated-migrators.ts";
import { describeObject, describeOrigin } from "./manifests.ts";
import type { Manifest } from "./manifests.ts";

export const SYNC_WAVE = "argocd.argoproj.io/sync-wave";

export function isMigrator(o: KubeObject): boolean {
  return groupOf(o.apiVersion) === GROUP && o.kind === KIND;
}

export interface WireOptions {
  /** The namespace of objects that name none (the Application's destination namespace). */
  defaultNamespace: string;
  waiter: WaiterSettings;
  allowUnmatchedMigrators: boolean;
}

export interface Injection {
  workload: Manifest;
  /** The gated application container. */
  container: string;
  /** The waiter init container's name. */
  waiter: string;
}

export interface MigratorWiring {
  migrator: Manifest;
  /** The workload whose annotation generated this Migrator. */
  generatedFrom?: Manifest;
  injected: Injection[];
  optedOut: { workload: Manifest; reason: string }[];
  wave: { before: string | undefined; after: string | undefined; reason: string };
}

export interface WiringReport {
  migrators: MigratorWiring[];
  /** Workloads no Migrator selects. */
  ungated: Manifest[];
}

/** The integer sync wave of an object (Argo CD: annotation absent or not an integer → 0). */
export function syncWave(o: KubeObject): number {
  const v = o.metadata.annotations?.[SYNC_WAVE];
  if (v === undefined || !/^\s*[+-]?\d+\s*$/.test(v)) return 0;
  return Number.parseInt(v, 10);
}

function namespaceOf(o: KubeObject, defaultNamespace: string): string {
  return o.metadata.namespace ?? defaultNamespace;
}

function key(group: string, kind: string, ns: string, name: string): string {
  return [group, kind, ns, name].join("\u0000");
}

/** Wires Migrators to workloads, mutating the manifests in place; appends generated Migrators. */
export function wire(manifests: Manifest[], options: WireOptions): WiringReport {
  const ns = (o: KubeObject): string => namespaceOf(o, options.defaultNamespace);
  const index = new Map<string, KubeObject>();
  for (const m of manifests) {
    const name = m.object.metadata.name;
    if (name !== undefined) index.set(key(groupOf(m.object.apiVersion), m.object.kind, ns(m.object), name), m.object);
  }
  // Resolves an Argo Rollout's spec.workloadRef to the Deployment among the rendered objects.
  const lookup = {
    get: (apiVersion: string, kind: string, namespace: string | undefined, name: string): KubeObject | undefined =>
      index.get(key(groupOf(apiVersion), kind, namespace || options.defaultNamespace, name)),
  };
  const templateOf = (o: KubeObject): PodTemplateSpec | undefined => {
    if (!isWorkload(o)) return undefined;
    const t = podTemplateOf(o, lookup);
    if (t !== undefined && (typeof t.spec !== "object" || t.spec === null || !Array.isArray(t.spec.containers))) {
      return undefined;
    }
    return t;
  };

  const generated = generateMigrators(manifests, options.defaultNamespace, templateOf);
  const generatedFrom = new Map<KubeObject, Manifest>(generated.map((g) => [g.migrator.object, g.workload]));

  const workloads = manifests.filter((m) => isWorkload(m.object));
  const migrators = manifests.filter((m) => isMigrator(m.object)).sort((a, b) => compareRefs(a.object, b.object));
  const selected = new Set<Manifest>();
  // Keyed by the pod spec: a Pod's template is a fresh {metadata, spec} view on every call, its spec is not.
  const perTemplate = new Map<PodTemplateSpec["spec"], { waiter: Container; migrator: string }[]>();
  const waiterOwners = new Map<string, string>();
  const report: WiringReport = { migrators: [], ungated: [] };

  for (const m of migrators) {
    const migrator = m.object as Migrator;
    const name = migrator.metadata.name;
    const where = `${describeObject(migrator, options.defaultNamespace)} (${describeOrigin(m.origin)})`;
    if (name === undefined) throw new PluginError(`${where}: a Migrator needs metadata.name`);
    if (migrator.apiVersion !== API_VERSION) {
      throw new PluginError(`${where}: apiVersion ${migrator.apiVersion} is not served; use ${API_VERSION}`);
    }
    const problem = migratorSpecProblem(migrator.spec);
    if (problem !== undefined) throw new PluginError(`${where}: ${problem}`);
    const spec = migrator.spec;
    let matches: (labels: Record<string, string> | undefined) => boolean;
    try {
      matches = compileSelector(validateSelector(spec.selector, `${where}: spec.selector`));
    } catch (error) {
      throw new PluginError((error as Error).message);
    }
    const waiterName = waiterContainerName(name);
    const owner = waiterOwners.get(`${ns(migrator)}\u0000${waiterName}`);
    if (owner !== undefined && owner !== name) {
      throw new PluginError(
        `${where}: waiter container name ${waiterName} is also Migrator ${owner}'s; shorten a name`,
      );
    }
    waiterOwners.set(`${ns(migrator)}\u0000${waiterName}`, name);

    const wiring: MigratorWiring = {
      migrator: m,
      injected: [],
      optedOut: [],
      wave: { before: migrator.metadata.annotations?.[SYNC_WAVE], after: undefined, reason: "" },
    };
    const from = generatedFrom.get(migrator);
    if (from !== undefined) wiring.generatedFrom = from;
    let lowestWave: number | undefined;

    for (const w of workloads) {
      if (ns(w.object) !== ns(migrator)) continue;
      const template = templateOf(w.object);
      if (template === undefined || !matches(template.metadata?.labels)) continue;
      selected.add(w);
      const wave = syncWave(w.object);
      lowestWave = lowestWave === undefined ? wave : Math.min(lowestWave, wave);
      const optOut = optOutReason(w.object, template);
      if (optOut !== undefined) {
        wiring.optedOut.push({ workload: w, reason: optOut });
        continue;
      }
      let container: string;
      try {
        container = gatedContainer(spec, template.spec).name;
      } catch (error) {
        if (!(error instanceof JobBuildError)) throw error;
        throw new PluginError(
          `${where}: ${describeObject(w.object, options.defaultNamespace)} (${describeOrigin(w.origin)}): ${error.message}`,
        );
      }
      const waiter = waiterInitContainer(name, container, options.waiter);
      const list = perTemplate.get(template.spec) ?? [];
      if (!list.some((x) => x.waiter.name === waiter.name)) list.push({ waiter, migrator: name });
      perTemplate.set(template.spec, list);
      wiring.injected.push({ workload: w, container, waiter: waiter.name });
    }

    if (lowestWave === undefined) {
      if (!options.allowUnmatchedMigrators) {
        throw new PluginError(
          `${where}: selects no workload in namespace ${ns(migrator) || "(default)"}; fix spec.selector, or keep the Migrator in the ` +
            "same source as its workloads (Argo CD renders each source of a multi-source Application on its own), " +
            "or set parameter allow-unmatched-migrators",
        );
      }
      wiring.wave = { ...wiring.wave, after: wiring.wave.before, reason: "selects no workload; left as it is" };
    } else {
      wiring.wave = setWave(migrator, lowestWave);
    }
    report.migrators.push(wiring);
  }

  for (const [podSpec, waiters] of perTemplate) injectWaiters(podSpec, waiters, options.waiter.token === true);
  report.ungated = workloads.filter((w) => !selected.has(w));
  return report;
}

function optOutReason(workload: KubeObject, template: PodTemplateSpec): string | undefined {
  if (workload.metadata.annotations?.[ANNOTATIONS.noWait] === "true") return `${ANNOTATIONS.noWait} on the workload`;
  if (template.metadata?.annotations?.[ANNOTATIONS.noWait] === "true") {
    return `${ANNOTATIONS.noWait} on the pod template`;
  }
  return undefined;
}

function setWave(migrator: KubeObject, lowestWorkloadWave: number): MigratorWiring["wave"] {
  const before = migrator.metadata.annotations?.[SYNC_WAVE];
  if (before !== undefined && /^\s*[+-]?\d+\s*$/.test(before) && Number.parseInt(before, 10) < lowestWorkloadWave) {
    return { before, after: before, reason: `kept: already below the workloads' lowest wave ${lowestWorkloadWave}` };
  }
  const after = String(lowestWorkloadWave - 1);
  migrator.metadata.annotations = { ...migrator.metadata.annotations, [SYNC_WAVE]: after };
  return { before, after, reason: `one below the workloads' lowest wave ${lowestWorkloadWave}` };
}

/**
 * Puts the waiters first, in name order, replacing init containers of the same names; with waiter tokens,
 * their token volume goes last in `volumes` (replacing one of the same name).
 */
function injectWaiters(podSpec: PodTemplateSpec["spec"], waiters: { waiter: Container }[], token: boolean): void {
  const sorted = waiters.map((w) => w.waiter).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const names = new Set(sorted.map((w) => w.name));
  const others = (podSpec.initContainers ?? []).filter((c) => !names.has(c.name));
  podSpec.initContainers = [...sorted, ...others];
  if (!token) return;
  const volumes = Array.isArray(podSpec["volumes"]) ? (podSpec["volumes"] as { name?: unknown }[]) : [];
  podSpec["volumes"] = [...volumes.filter((v) => v.name !== WAITER_TOKEN_VOLUME), waiterTokenVolume()];
}

function compareRefs(a: KubeObject, b: KubeObject): number {
  const ka = `${a.metadata.namespace ?? ""}\u0000${a.metadata.name ?? ""}`;
  const kb = `${b.metadata.namespace ?? ""}\u0000${b.metadata.name ?? ""}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}
