// Turning parsed documents into Kubernetes objects, each remembering where it came from so an error can
// name the file and line. Follows what Argo CD accepts: empty documents are skipped, `kind: …List`
// objects are expanded into their items, everything else must be an object with apiVersion, kind and
// metadata.name (or generateName).
import { groupOf } from "@digest-migrations/shared";
import type { KubeObject } from "@digest-migrations/shared";
import { PluginError, where } from "./errors.ts";
import type { SourceDocument } from "./yaml-io.ts";

export interface Origin {
  /** A path relative to the application directory, or a description such as `helm template (templates/x.yaml)`. */
  file: string;
  line: number;
}

export interface Manifest {
  object: KubeObject;
  origin: Origin;
}

export function describeOrigin(origin: Origin): string {
  return where(origin.file, origin.line);
}

/** Why a document is not a Kubernetes object, or undefined when it is one. */
export function objectProblem(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "a document is not a mapping";
  const o = value as Record<string, unknown>;
  if (typeof o["apiVersion"] !== "string" || o["apiVersion"] === "") return "object has no apiVersion";
  if (typeof o["kind"] !== "string" || o["kind"] === "") return "object has no kind";
  if (isList(o)) return undefined;
  const meta = o["metadata"];
  if (typeof meta !== "object" || meta === null || Array.isArray(meta)) return `${o["kind"]} has no metadata`;
  const m = meta as Record<string, unknown>;
  if (typeof m["name"] !== "string" && typeof m["generateName"] !== "string") {
    return `${o["kind"]} has no metadata.name`;
  }
  for (const field of ["labels", "annotations"] as const) {
    const v = m[field];
    if (v === undefined || v === null) continue;
    if (typeof v !== "object" || Array.isArray(v)) return `${o["kind"]} metadata.${field} is not a mapping`;
    for (const [k, s] of Object.entries(v)) {
      if (typeof s !== "string") return `${o["kind"]} metadata.${field}.${k} is not a string`;
    }
  }
  if (m["namespace"] !== undefined && typeof m["namespace"] !== "string") {
    return `${o["kind"]} metadata.namespace is not a string`;
  }
  return undefined;
}

function isList(o: Record<string, unknown>): boolean {
  return typeof o["kind"] === "string" && o["kind"].endsWith("List") && "items" in o && !("spec" in o);
}

/**
 * Objects from documents of one file or one renderer's output. Throws a PluginError naming the document's
 * position when a document is not an object.
 */
export function manifestsFrom(file: string, documents: readonly SourceDocument[]): Manifest[] {
  const out: Manifest[] = [];
  for (const doc of documents) {
    if (doc.value === null || doc.value === undefined) continue;
    const origin = { file, line: doc.line };
    const problem = objectProblem(doc.value);
    if (problem !== undefined) throw new PluginError(`${describeOrigin(origin)}: ${problem}`);
    const o = doc.value as KubeObject;
    if (isList(o)) {
      const items = o["items"];
      if (items === null) continue;
      if (!Array.isArray(items)) throw new PluginError(`${describeOrigin(origin)}: ${o.kind}.items is not a list`);
      items.forEach((item: unknown, i) => {
        const itemProblem = objectProblem(item);
        if (itemProblem !== undefined || isList(item as Record<string, unknown>)) {
          throw new PluginError(`${describeOrigin(origin)}: ${o.kind} item ${i}: ${itemProblem ?? "nested list"}`);
        }
        out.push({ object: item as KubeObject, origin });
      });
      continue;
    }
    out.push({ object: o, origin });
  }
  return out;
}

/** `Kind namespace/name` for messages (namespace as written, or the default it takes). */
export function describeObject(o: KubeObject, defaultNamespace = ""): string {
  const ns = o.metadata.namespace ?? defaultNamespace;
  const name = o.metadata.name ?? `${o.metadata.generateName ?? ""}*`;
  return ns === "" ? `${o.kind} ${name}` : `${o.kind} ${ns}/${name}`;
}

/**
 * Two objects with the same group, kind, namespace and name would overwrite each other in the cluster (Argo
 * CD reports them as duplicates too). Objects without a namespace take the application's namespace for the
 * comparison only.
 */
export function checkDuplicates(manifests: readonly Manifest[], defaultNamespace: string): void {
  const seen = new Map<string, Manifest>();
  for (const m of manifests) {
    const name = m.object.metadata.name;
    if (name === undefined) continue;
    const key = [
      groupOf(m.object.apiVersion),
      m.object.kind,
      m.object.metadata.namespace ?? defaultNamespace,
      name,
    ].join("\u0000");
    const first = seen.get(key);
    if (first !== undefined) {
      throw new PluginError(
        `duplicate object ${describeObject(m.object, defaultNamespace)}: defined in ${describeOrigin(first.origin)} and ${describeOrigin(m.origin)}`,
      );
    }
    seen.set(key, m);
  }
}
