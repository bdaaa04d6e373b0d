// Migrators asked for by a workload annotation, for charts that would rather not template a Migrator:
//   migrations.coderanger.net/command: '["python", "manage.py", "migrate"]'   (or: python manage.py migrate)
//   migrations.coderanger.net/args: '["--noinput"]'                           (optional, JSON array)
//   migrations.coderanger.net/container: app                                   (optional)
// on a Deployment `myapp` produce the Migrator `myapp-migrations` in the workload's namespace, selecting the
// workload's pods (its spec.selector, or its pod template's labels for kinds without one). The generated
// Migrator carries GENERATED_FROM, so rendering the plugin's own output regenerates it in place instead of
// reporting a duplicate.
import { ANNOTATIONS, API_VERSION, KIND, LABELS, MANAGED_BY, groupOf } from "@digest-migrations/shared";
import type { KubeObject, LabelSelector, Labels, Migrator, PodTemplateSpec } from "@digest-migrations/shared";
import { PluginError } from "./errors.ts";
import { describeObject, describeOrigin } from "./manifests.ts";
import type { Manifest } from "./manifests.ts";

/** On a generated Migrator: `<Kind>/<name>` of the workload whose annotation asked for it. */
export const GENERATED_FROM = "migrations.coderanger.net/generated-from";

export function generatedMigratorName(workloadName: string): string {
  return `${workloadName}-migrations`;
}

/**
 * Adds (or regenerates in place) the Migrators that workload annotations ask for. `templateOf` gives a
 * workload's pod template. Returns the generated Migrators' manifests paired with their workloads.
 */
export function generateMigrators(
  manifests: Manifest[],
  defaultNamespace: string,
  templateOf: (workload: KubeObject) => PodTemplateSpec | undefined,
): { migrator: Manifest; workload: Manifest }[] {
  const out: { migrator: Manifest; workload: Manifest }[] = [];
  for (const workload of [...manifests]) {
    const annotations = workload.object.metadata.annotations ?? {};
    const commandText = annotations[ANNOTATIONS.command];
    if (commandText === undefined) continue;
    const name = workload.object.metadata.name;
    if (name === undefined) continue;
    const where = `${describeObject(workload.object, defaultNamespace)} (${describeOrigin(workload.origin)})`;
    const template = templateOf(workload.object);
    if (template === undefined) {
      throw new PluginError(`${where}: annotation ${ANNOTATIONS.command} on an object without a pod template`);
    }
    const spec: Migrator["spec"] = {
      selector: selectorFor(workload.object, template, where),
      command: parseCommand(commandText, `${where}: annotation ${ANNOTATIONS.command}`),
    };
    const argsText = annotations[ANNOTATIONS.args];
    if (argsText !== undefined) spec.args = parseJsonArray(argsText, `${where}: annotation ${ANNOTATIONS.args}`);
    const container = annotations[ANNOTATIONS.container];
    if (container !== undefined) spec.container = container;

    const source = `${workload.object.kind}/${name}`;
    const migrator: Migrator = {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: {
        name: generatedMigratorName(name),
        ...(workload.object.metadata.namespace === undefined ? {} : { namespace: workload.object.metadata.namespace }),
        labels: { [LABELS.managedBy]: MANAGED_BY },
        annotations: { [GENERATED_FROM]: source },
      },
      spec,
    };
    const ns = workload.object.metadata.namespace ?? defaultNamespace;
    const existing = manifests.findIndex(
      (m) =>
        groupOf(m.object.apiVersion) === groupOf(API_VERSION) &&
        m.object.kind === KIND &&
        m.object.metadata.name === migrator.metadata.name &&
        (m.object.metadata.namespace ?? defaultNamespace) === ns,
    );
    if (existing < 0) {
      manifests.push({ object: migrator, origin: workload.origin });
    } else {
      const previous = manifests[existing] as Manifest;
      if (previous.object.metadata.annotations?.[GENERATED_FROM] !== source) {
        throw new PluginError(
          `${where}: annotation ${ANNOTATIONS.command} asks for Migrator ${migrator.metadata.name ?? ""}, which ${describeOrigin(previous.origin)} already defines`,
        );
      }
      // Rendering our own output: regenerate in place (wire() recomputes the sync wave the same way).
      manifests[existing] = { object: migrator, origin: previous.origin };
    }
    out.push({ migrator: manifests[existing < 0 ? manifests.length - 1 : existing] as Manifest, workload });
  }
  return out;
}

function selectorFor(workload: KubeObject, template: PodTemplateSpec, where: string): LabelSelector {
  const spec = workload["spec"] as { selector?: unknown; workloadRef?: unknown } | undefined;
  const own = spec?.selector;
  if (typeof own === "object" && own !== null && !Array.isArray(own)) {
    const s = own as LabelSelector;
    const hasTerms = Object.keys(s.matchLabels ?? {}).length > 0 || (s.matchExpressions ?? []).length > 0;
    if (hasTerms) return structuredClone(s);
  }
  const labels: Labels = template.metadata?.labels ?? {};
  if (Object.keys(labels).length === 0) {
    throw new PluginError(`${where}: annotation ${ANNOTATIONS.command} needs pod template labels to select the pods`);
  }
  return { matchLabels: { ...labels } };
}

/** A command as a JSON array of strings, or a shell-style string split into words. */
export function parseCommand(text: string, where: string): string[] {
  const trimmed = text.trim();
  if (trimmed.startsWith("[")) return parseJsonArray(trimmed, where);
  const words = splitShellWords(trimmed, where);
  if (words.length === 0) throw new PluginError(`${where}: empty command`);
  return words;
}

function parseJsonArray(text: string, where: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new PluginError(`${where}: not a JSON array of strings`);
  }
  if (!Array.isArray(parsed) || !parsed.every((s) => typeof s === "string")) {
    throw new PluginError(`${where}: not a JSON array of strings`);
  }
  return parsed;
}

/** POSIX-shell-like word splitting: whitespace separates, '…' is literal, "…" allows \" and \\, \x escapes x. */
export function splitShellWords(text: string, where: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else if (c === "\\" && (text[i + 1] === '"' || text[i + 1] === "\\")) word += text[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote !== undefined) throw new PluginError(`${where}: unterminated ${quote} quote`);
  if (inWord) words.push(word);
  return words;
}
