// Checks of a Migrator's spec that its schema cannot express, shared by the plugin (an error naming
// the file) and the reconciler (condition InvalidSpec): one wording, one rule. The selector's own
// grammar is checked by compileSelector (selector.ts); selectorsOf gives both checks at once.
import type { Labels } from "./k8s.ts";
import type { Migrator, MigratorSpec } from "./migrator.ts";
import { SelectorError, compileSelector } from "./selector.ts";

/** What is wrong with `spec`, outside the selector's grammar, as `spec.<field>: <reason>`; undefined if nothing. */
export function migratorSpecProblem(spec: unknown): string | undefined {
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) return "spec: required, an object";
  const s = spec as Partial<Record<keyof MigratorSpec, unknown>>;
  if (s.selector === undefined || s.selector === null) return "spec.selector: required";
  for (const field of ["command", "args"] as const) {
    const value = s[field];
    if (value === undefined || value === null) continue;
    if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
      return `spec.${field}: must be a list of strings`;
    }
  }
  const command = s.command as string[] | undefined | null;
  if (Array.isArray(command) && command.length === 0) {
    // Upstream copies an empty list over the container's command, so the Job would run the image's
    // own entrypoint — usually the application itself — and call that a migration.
    return "spec.command: empty; the migration Job would run the image's entrypoint, not a migration (give the migration command, or leave spec.command out to keep the container's own)";
  }
  if (Array.isArray(command) && command[0] === "") return "spec.command: the first word (the executable) is empty";
  if (s.container !== undefined && s.container !== null && typeof s.container !== "string") {
    return "spec.container: must be a string";
  }
  return undefined;
}

export type MigratorSelectors =
  | { ok: true; select: (l: Labels | undefined) => boolean; template: (l: Labels | undefined) => boolean }
  | { ok: false; message: string };

/** The compiled spec.selector and spec.templateSelector of a Migrator, or why its spec is invalid. */
export function selectorsOf(migrator: Migrator): MigratorSelectors {
  const where = `Migrator ${migrator.metadata.namespace}/${migrator.metadata.name}`;
  const problem = migratorSpecProblem(migrator.spec);
  if (problem !== undefined) return { ok: false, message: `${where} ${problem}` };
  try {
    return {
      ok: true,
      select: compileSelector(migrator.spec.selector, `${where} spec.selector`),
      template: compileSelector(migrator.spec.templateSelector, `${where} spec.templateSelector`),
    };
  } catch (error) {
    if (error instanceof SelectorError) return { ok: false, message: error.message };
    throw error;
  }
}
