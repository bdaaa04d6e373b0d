// Kubernetes resource quantities (k8s.io/apimachinery/pkg/api/resource): "500m", "1.5", "256Mi", "1e3",
// or a plain number. Only what the Migrator's spec.resources needs: is a value a quantity the API server
// accepts for a container's resources, and how do two of them compare (requests must not exceed limits).
import type { ResourceRequirements } from "./k8s.ts";

/**
 * The quantity grammar: a signed decimal number, then a binary suffix (Ki … Ei), a decimal suffix
 * (n, u, m, k, M, G, T, P, E) or a decimal exponent (e3, E-2). The CRD's pattern is the same expression.
 */
export const QUANTITY_PATTERN =
  /^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$/;

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

/** The value of quantity `value` (a string or a JSON number), or undefined when it is not one. */
export function parseQuantity(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? value : undefined;
  if (typeof value !== "string" || !QUANTITY_PATTERN.test(value)) return undefined;
  const match = /^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)$/.exec(value);
  if (match === null) return undefined;
  const number = Number(match[1]);
  const suffix = match[2] ?? "";
  if (suffix === "") return number;
  const scale = BINARY[suffix] ?? DECIMAL[suffix];
  if (scale !== undefined) return number * scale;
  const exponent = Number(suffix.slice(1));
  return Number.isFinite(exponent) ? number * 10 ** exponent : undefined;
}

/** A container's resource names: the standard ones, hugepages-<size>, or an extended resource <domain>/<name>. */
const RESOURCE_NAME =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/**
 * What is wrong with `resources` as a migration container's ResourceRequirements, as `<field>: <reason>`
 * under the field path `where` (e.g. "spec.resources"); undefined if nothing. Checks the shape ({limits,
 * requests} of name → quantity), every quantity, and that no request exceeds its limit — the API server
 * refuses such a pod, so the Job could never start one.
 */
export function resourcesProblem(resources: unknown, where: string): string | undefined {
  if (typeof resources !== "object" || resources === null || Array.isArray(resources)) {
    return `${where}: must be an object with limits and/or requests`;
  }
  const r = resources as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (key !== "limits" && key !== "requests") return `${where}.${key}: unknown field (only limits and requests)`;
  }
  const parsed: Record<"limits" | "requests", Map<string, number>> = { limits: new Map(), requests: new Map() };
  for (const kind of ["limits", "requests"] as const) {
    const list = r[kind];
    if (list === undefined || list === null) continue;
    if (typeof list !== "object" || Array.isArray(list))
      return `${where}.${kind}: must be a map of resource name to quantity`;
    for (const [name, value] of Object.entries(list as Record<string, unknown>)) {
      if (!RESOURCE_NAME.test(name)) return `${where}.${kind}.${name}: not a resource name`;
      const quantity = parseQuantity(value);
      if (quantity === undefined) {
        return `${where}.${kind}.${name}: ${JSON.stringify(value)} is not a quantity (e.g. 500m, 1, 256Mi)`;
      }
      if (quantity < 0) return `${where}.${kind}.${name}: must not be negative (got ${JSON.stringify(value)})`;
      parsed[kind].set(name, quantity);
    }
  }
  for (const [name, request] of parsed.requests) {
    const limit = parsed.limits.get(name);
    if (limit !== undefined && request > limit) {
      const show = (kind: "limits" | "requests"): string => JSON.stringify((r[kind] as Record<string, unknown>)[name]);
      return `${where}.requests.${name}: ${show("requests")} is more than ${where}.limits.${name} ${show("limits")}; the API server would refuse the migration pod`;
    }
  }
  return undefined;
}

/** A copy of valid `resources` (see resourcesProblem) as a container's resources. */
export function copyResources(resources: ResourceRequirements): ResourceRequirements {
  const copy: ResourceRequirements = {};
  if (resources.limits) copy.limits = { ...resources.limits };
  if (resources.requests) copy.requests = { ...resources.requests };
  return copy;
}
