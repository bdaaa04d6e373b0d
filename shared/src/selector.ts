// Kubernetes label selectors (metav1.LabelSelector) with the API server's semantics:
// `matchLabels` and `matchExpressions` are ANDed; a `matchLabels` entry k: v is the requirement
// `k In [v]`; `NotIn` and `DoesNotExist` match objects that lack the key; `In`/`NotIn` need at
// least one value and `Exists`/`DoesNotExist` must have none (metav1.LabelSelectorAsSelector).
// Label keys and values are validated the way apimachinery's validation does it, so a selector
// accepted here is one the API server accepts too.
import type { LabelSelector, LabelSelectorRequirement, Labels } from "./k8s.ts";

export class SelectorError extends Error {
  override name = "SelectorError";
}

export const SELECTOR_OPERATORS = ["In", "NotIn", "Exists", "DoesNotExist"] as const;
export type SelectorOperator = (typeof SELECTOR_OPERATORS)[number];

/** A label name (the part after an optional prefix) and a non-empty label value: at most 63 characters. */
const LABEL_NAME_MAX = 63;
/** The optional prefix of a label key is a DNS subdomain: at most 253 characters. */
const DNS_SUBDOMAIN_MAX = 253;
const LABEL_NAME_RE = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS_SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why `key` is not a valid label key, or undefined when it is (apimachinery IsQualifiedName). */
export function labelKeyProblem(key: string): string | undefined {
  const parts = key.split("/");
  let name: string;
  if (parts.length === 1) {
    name = key;
  } else if (parts.length === 2) {
    const prefix = parts[0] ?? "";
    name = parts[1] ?? "";
    if (prefix === "") return "prefix part must be non-empty";
    if (prefix.length > DNS_SUBDOMAIN_MAX) return `prefix part must be no more than ${DNS_SUBDOMAIN_MAX} characters`;
    if (!DNS_SUBDOMAIN_RE.test(prefix)) {
      return "prefix part must be a lowercase DNS subdomain (e.g. example.com)";
    }
  } else {
    return "a label key is an optional DNS subdomain prefix and a name, separated by one '/'";
  }
  if (name === "") return "name part must be non-empty";
  if (name.length > LABEL_NAME_MAX) return `name part must be no more than ${LABEL_NAME_MAX} characters`;
  if (!LABEL_NAME_RE.test(name)) {
    return "name part must consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric";
  }
  return undefined;
}

/** Why `value` is not a valid label value, or undefined when it is (apimachinery IsValidLabelValue). */
export function labelValueProblem(value: string): string | undefined {
  if (value === "") return undefined;
  if (value.length > LABEL_NAME_MAX) return `must be no more than ${LABEL_NAME_MAX} characters`;
  if (!LABEL_NAME_RE.test(value)) {
    return "must be empty or consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric";
  }
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  return typeof value === "object" ? "an object" : `${typeof value} ${JSON.stringify(value)}`;
}

/**
 * Checks that `selector` is a well-formed metav1.LabelSelector and returns it typed. `where` names
 * the selector in errors (e.g. `Migrator apps/myapp spec.selector`). A missing selector (undefined
 * or null) is returned as `{}`, which matches everything: upstream migrations-operator treats a nil
 * selector as an empty one. Unknown fields are rejected, because a misspelt `matchLabel` would
 * otherwise silently select every pod.
 */
export function validateSelector(selector: unknown, where: string): LabelSelector {
  if (selector === undefined || selector === null) return {};
  if (!isPlainObject(selector)) {
    throw new SelectorError(`${where}: a label selector must be an object, got ${describe(selector)}`);
  }
  for (const field of Object.keys(selector)) {
    if (field !== "matchLabels" && field !== "matchExpressions") {
      throw new SelectorError(
        `${where}: unknown field "${field}" (a label selector has matchLabels and matchExpressions)`,
      );
    }
  }
  const result: LabelSelector = {};
  const { matchLabels, matchExpressions } = selector;
  if (matchLabels !== undefined && matchLabels !== null) {
    if (!isPlainObject(matchLabels)) {
      throw new SelectorError(
        `${where}.matchLabels: must be a map of label keys to values, got ${describe(matchLabels)}`,
      );
    }
    const labels: Labels = {};
    for (const [key, value] of Object.entries(matchLabels)) {
      const at = `${where}.matchLabels[${JSON.stringify(key)}]`;
      const keyProblem = labelKeyProblem(key);
      if (keyProblem !== undefined) throw new SelectorError(`${at}: invalid label key: ${keyProblem}`);
      if (typeof value !== "string") {
        throw new SelectorError(`${at}: a label value must be a string, got ${describe(value)} (quote it in YAML)`);
      }
      const valueProblem = labelValueProblem(value);
      if (valueProblem !== undefined) {
        throw new SelectorError(`${at}: invalid label value ${JSON.stringify(value)}: ${valueProblem}`);
      }
      labels[key] = value;
    }
    result.matchLabels = labels;
  }
  if (matchExpressions !== undefined && matchExpressions !== null) {
    if (!Array.isArray(matchExpressions)) {
      throw new SelectorError(
        `${where}.matchExpressions: must be a list of requirements, got ${describe(matchExpressions)}`,
      );
    }
    result.matchExpressions = matchExpressions.map((requirement: unknown, index) =>
      validateRequirement(requirement, `${where}.matchExpressions[${index}]`),
    );
  }
  return result;
}

function validateRequirement(requirement: unknown, at: string): LabelSelectorRequirement {
  if (!isPlainObject(requirement)) {
    throw new SelectorError(
      `${at}: a requirement must be an object with key, operator and values, got ${describe(requirement)}`,
    );
  }
  for (const field of Object.keys(requirement)) {
    if (field !== "key" && field !== "operator" && field !== "values") {
      throw new SelectorError(`${at}: unknown field "${field}" (a requirement has key, operator and values)`);
    }
  }
  const { key, operator, values } = requirement;
  if (typeof key !== "string") throw new SelectorError(`${at}.key: required, must be a string, got ${describe(key)}`);
  const keyProblem = labelKeyProblem(key);
  if (keyProblem !== undefined)
    throw new SelectorError(`${at}.key: invalid label key ${JSON.stringify(key)}: ${keyProblem}`);
  if (typeof operator !== "string" || !(SELECTOR_OPERATORS as readonly string[]).includes(operator)) {
    throw new SelectorError(
      `${at}.operator: ${operator === undefined ? "required" : `unsupported operator ${JSON.stringify(operator)}`}` +
        ` (one of ${SELECTOR_OPERATORS.join(", ")})`,
    );
  }
  let list: string[] = [];
  if (values !== undefined && values !== null) {
    if (!Array.isArray(values))
      throw new SelectorError(`${at}.values: must be a list of strings, got ${describe(values)}`);
    list = values.map((value: unknown, index) => {
      if (typeof value !== "string") {
        throw new SelectorError(`${at}.values[${index}]: must be a string, got ${describe(value)} (quote it in YAML)`);
      }
      const problem = labelValueProblem(value);
      if (problem !== undefined) {
        throw new SelectorError(`${at}.values[${index}]: invalid label value ${JSON.stringify(value)}: ${problem}`);
      }
      return value;
    });
  }
  if ((operator === "In" || operator === "NotIn") && list.length === 0) {
    throw new SelectorError(`${at}.values: must be non-empty when operator is ${operator}`);
  }
  if ((operator === "Exists" || operator === "DoesNotExist") && list.length > 0) {
    throw new SelectorError(`${at}.values: must be empty when operator is ${operator}`);
  }
  return list.length > 0 ? { key, operator, values: list } : { key, operator };
}

type Predicate = (labels: Labels) => boolean;

function requirementPredicate(requirement: LabelSelectorRequirement): Predicate {
  const { key } = requirement;
  const values = new Set(requirement.values ?? []);
  const has = (labels: Labels): boolean => Object.hasOwn(labels, key);
  switch (requirement.operator as SelectorOperator) {
    case "In":
      return (labels) => has(labels) && values.has(labels[key] ?? "");
    case "NotIn":
      // Kubernetes: NotIn also matches objects without the key.
      return (labels) => !has(labels) || !values.has(labels[key] ?? "");
    case "Exists":
      return has;
    case "DoesNotExist":
      return (labels) => !has(labels);
  }
}

/**
 * Validates `selector` once and returns a matcher for label sets. A missing or empty selector
 * matches everything (upstream's nil-as-empty). Throws SelectorError naming `where`.
 */
export function compileSelector(
  selector: LabelSelector | undefined,
  where = "label selector",
): (labels: Labels | undefined) => boolean {
  const valid = validateSelector(selector, where);
  const predicates: Predicate[] = [];
  for (const [key, value] of Object.entries(valid.matchLabels ?? {})) {
    predicates.push((labels) => Object.hasOwn(labels, key) && labels[key] === value);
  }
  for (const requirement of valid.matchExpressions ?? []) predicates.push(requirementPredicate(requirement));
  return (labels) => {
    const set = labels ?? {};
    return predicates.every((predicate) => predicate(set));
  };
}

/** One-shot form of compileSelector: does `selector` select an object with `labels`? */
export function selectorMatches(selector: LabelSelector | undefined, labels: Labels | undefined): boolean {
  return compileSelector(selector)(labels);
}
