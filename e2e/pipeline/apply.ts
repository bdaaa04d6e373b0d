// Applying manifests the way Argo CD's application controller does: server-side apply (PATCH with
// `application/apply-patch+yaml`, fieldManager `argocd-controller`, force — Argo CD's
// `ServerSideApply=true` sync option), one sync wave after another (annotation
// argocd.argoproj.io/sync-wave, default 0), waiting for a CustomResourceDefinition to be
// Established before anything later in the sync uses it.
import type { KubeObject } from "@digest-migrations/shared";
import { KubeClient } from "../kit/client.ts";
import { waitFor } from "../kit/wait.ts";

export const FIELD_MANAGER = "argocd-controller";
export const APPLY_PATCH = "application/apply-patch+yaml";
export const SYNC_WAVE = "argocd.argoproj.io/sync-wave";

/** The object's sync wave (Argo CD: an integer annotation, default 0). */
export function syncWave(obj: KubeObject): number {
  const raw = obj.metadata.annotations?.[SYNC_WAVE];
  if (raw === undefined) return 0;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new Error(`${describe(obj)}: ${SYNC_WAVE} "${raw}" is not an integer`);
  return n;
}

/** Objects grouped by wave, waves ascending, the given order kept inside a wave. */
export function byWave(objects: KubeObject[]): { wave: number; objects: KubeObject[] }[] {
  const waves = new Map<number, KubeObject[]>();
  for (const o of objects) waves.set(syncWave(o), [...(waves.get(syncWave(o)) ?? []), o]);
  return [...waves.entries()].sort(([a], [b]) => a - b).map(([wave, objs]) => ({ wave, objects: objs }));
}

export function describe(obj: KubeObject): string {
  const ns = obj.metadata.namespace ? `${obj.metadata.namespace}/` : "";
  return `${obj.kind} ${ns}${obj.metadata.name ?? "?"}`;
}

export interface AppliedObject {
  wave: number;
  object: KubeObject;
}

/**
 * Applies `objects` as `argocd-controller`. Namespaced objects without a namespace go to
 * `destinationNamespace` (Argo CD's `spec.destination.namespace`). A fresh client per call so API
 * discovery sees CRDs created by earlier calls.
 */
export async function applyObjects(
  kubeconfig: string,
  objects: KubeObject[],
  destinationNamespace: string,
  log: (line: string) => void = () => {},
): Promise<AppliedObject[]> {
  const applied: AppliedObject[] = [];
  for (const { wave, objects: inWave } of byWave(objects)) {
    const client = KubeClient.fromFile(kubeconfig);
    for (const obj of inWave) {
      const result = await serverSideApply(client, obj, destinationNamespace);
      applied.push({ wave, object: result });
      log(`applied ${describe(result)} (wave ${wave})`);
      if (obj.kind === "CustomResourceDefinition" && obj.apiVersion.startsWith("apiextensions.k8s.io/")) {
        await waitEstablished(client, obj.metadata.name ?? "");
      }
    }
  }
  return applied;
}

/**
 * One server-side apply; the JSON body is valid YAML. With `dryRun`, the API server runs every admission
 * and validation step (`dryRun=All`) and persists nothing.
 */
export async function serverSideApply(
  client: KubeClient,
  obj: KubeObject,
  destinationNamespace?: string,
  options: { dryRun?: boolean } = {},
): Promise<KubeObject> {
  const name = obj.metadata.name;
  if (!name) throw new Error(`${describe(obj)}: server-side apply needs metadata.name`);
  let path = await client.resourcePath(obj.apiVersion, obj.kind, obj.metadata.namespace ?? destinationNamespace, name);
  const namespaced = path.includes("/namespaces/");
  const body =
    namespaced && !obj.metadata.namespace && destinationNamespace
      ? { ...obj, metadata: { ...obj.metadata, namespace: destinationNamespace } }
      : obj;
  if (!namespaced && obj.metadata.namespace)
    path = await client.resourcePath(obj.apiVersion, obj.kind, undefined, name);
  try {
    return await client.request<KubeObject>("PATCH", path, {
      body,
      contentType: APPLY_PATCH,
      query: { fieldManager: FIELD_MANAGER, force: true, ...(options.dryRun === true ? { dryRun: "All" } : {}) },
    });
  } catch (err) {
    throw new Error(`applying ${describe(body)}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** Waits for a CRD's Established condition (its REST endpoint serves) and for discovery to list it. */
export async function waitEstablished(client: KubeClient, name: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    async () => {
      const crd = await client.get<{
        spec: { group: string; versions: { name: string; served: boolean }[]; names: { plural: string } };
        status?: { conditions?: { type: string; status: string }[] };
      }>(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
      const established = crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True");
      if (!established) return false;
      const version = crd.spec.versions.find((v) => v.served)?.name;
      const discovery = await client.get<{ resources: { name: string }[] }>(`/apis/${crd.spec.group}/${version}`);
      return discovery.resources.some((r) => r.name === crd.spec.names.plural);
    },
    { what: `CustomResourceDefinition ${name} to be established`, timeoutMs },
  );
}
