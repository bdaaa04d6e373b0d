// Checks of a Migrator's spec that its schema cannot express, shared by the plugin (an error naming
// the file) and the reconciler (condition InvalidSpec): one wording, one rule. The selector's own
// grammar is checked by compileSelector (selector.ts).
import type { MigratorSpec } from "./migrator.ts";

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
