// Checks of a Migrator's spec that its schema cannot express, shared by the plugin (an error naming
// the file) and the reconciler (condition InvalidSpec): one wording, one rule. The selector's own
// grammar is checked by compileSelector (selector.ts); selectorsOf gives both checks at once.
import type { Labels } from "./k8s.ts";
import type { Migrator, MigratorSpec } from "./migrator.ts";
import { resourcesProblem } from "./quantity.ts";
import { SelectorError, compileSelector } from "./selector.ts";

/** The largest value of a Kubernetes int32 field (Job spec.backoffLimit, ttlSecondsAfterFinished). */
const INT32_MAX = 2_147_483_647;

/** The whole-number fields of the Job controls: their least value and what they count. */
export const JOB_CONTROL_FIELDS = {
  activeDeadlineSeconds: { min: 1, unit: "seconds" },
  backoffLimit: { min: 0, unit: "retries" },
  ttlSecondsAfterFinished: { min: 0, unit: "seconds" },
  probePullTimeoutSeconds: { min: 1, unit: "seconds" },
} as const satisfies Partial<Record<keyof MigratorSpec, { min: number; unit: string }>>;

/** Why `value` is not a whole number from `min` to INT32_MAX, as the reason after "spec.<field>: ". */
export function wholeNumberProblem(value: unknown, min: number, unit: string): string | undefined {
  if (typeof value === "number" && Number.isInteger(value) && value >= min && value <= INT32_MAX) return undefined;
  return `must be a whole number of ${unit} from ${min} to ${INT32_MAX} (got ${JSON.stringify(value)})`;
}

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
  for (const [field, { min, unit }] of Object.entries(JOB_CONTROL_FIELDS)) {
    const value = s[field as keyof typeof JOB_CONTROL_FIELDS];
    if (value === undefined || value === null) continue;
    const problem = wholeNumberProblem(value, min, unit);
    if (problem !== undefined) return `spec.${field}: ${problem}`;
  }
  if (s.resources !== undefined && s.resources !== null) return resourcesProblem(s.resources, "spec.resources");
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
