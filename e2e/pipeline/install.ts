// Installing the reconciler's cluster-side pieces from the shipped manifests, as an operator would:
// the Migrator CRD (reconciler/deploy/crd.yaml) and the RBAC (reconciler/deploy/rbac.yaml) bound
// to the shipped ServiceAccount. The reconciler then runs as a local process authenticating as
// that ServiceAccount, so every API call it makes is checked against the shipped RBAC.
//
// The leader-election Role and RoleBinding are namespaced: they go to the namespace the Lease lives
// in (the reconciler's own namespace in a real install; a test's namespace here, so tests in one
// file never share a Lease).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import type { KubeObject } from "@digest-migrations/shared";
import { KubeClient } from "../kit/client.ts";
import type { ClusterHandle } from "../harness/env.ts";
import { serverSideApply, waitEstablished } from "./apply.ts";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CRD_FILE = path.join(repoRoot, "reconciler/deploy/crd.yaml");
export const RBAC_FILE = path.join(repoRoot, "reconciler/deploy/rbac.yaml");
/** The namespace the shipped RBAC binds (ClusterRoleBinding subject). */
export const RECONCILER_NAMESPACE = "digest-migrations-system";

export function readManifests(file: string): KubeObject[] {
  return parseAllDocuments(fs.readFileSync(file, "utf8"))
    .map((d) => d.toJS() as unknown)
    .filter((o): o is KubeObject => typeof o === "object" && o !== null);
}

export interface Installation {
  /** kubeconfig authenticating as the shipped ServiceAccount */
  kubeconfig: string;
  serviceAccount: string;
  serviceAccountNamespace: string;
}

/** Applies the CRD and cluster-wide RBAC (idempotent) and returns the ServiceAccount's kubeconfig. */
export async function installReconciler(cluster: ClusterHandle): Promise<Installation> {
  const admin = KubeClient.fromFile(cluster.adminKubeconfig);
  for (const crd of readManifests(CRD_FILE)) {
    await serverSideApply(admin, crd);
    await waitEstablished(admin, crd.metadata.name ?? "");
  }
  const rbac = readManifests(RBAC_FILE);
  const sa = rbac.find((o) => o.kind === "ServiceAccount");
  if (!sa?.metadata.name) throw new Error(`${RBAC_FILE}: no ServiceAccount`);
  await cluster.ensureNamespace(RECONCILER_NAMESPACE);
  for (const obj of rbac) {
    if (obj.kind === "ClusterRole" || obj.kind === "ClusterRoleBinding" || obj.kind === "ServiceAccount") {
      await serverSideApply(admin, obj, RECONCILER_NAMESPACE);
    }
  }
  const kubeconfig = await cluster.kubeconfigFor(RECONCILER_NAMESPACE, sa.metadata.name);
  return { kubeconfig, serviceAccount: sa.metadata.name, serviceAccountNamespace: RECONCILER_NAMESPACE };
}

/** The shipped leader-election Role and RoleBinding, applied in `namespace`. */
export async function installLeaseRbac(cluster: ClusterHandle, namespace: string): Promise<void> {
  const admin = KubeClient.fromFile(cluster.adminKubeconfig);
  for (const obj of readManifests(RBAC_FILE)) {
    if (obj.kind === "Role" || obj.kind === "RoleBinding") {
      await serverSideApply(admin, { ...obj, metadata: { ...obj.metadata, namespace } });
    }
  }
}
