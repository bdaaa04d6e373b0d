// The waiter init container: injected by the plugin into every pod template a Migrator selects,
// run from the reconciler's image, answered by the reconciler's waiter API. Both sides build
// and read it through this module so the contract lives in one place.
import type { Container } from "./k8s.ts";
import { WAITER_CONTAINER_PREFIX } from "./migrator.ts";

/** Default port of the reconciler's waiter API. */
export const WAITER_API_PORT = 8443;
/** Path of the waiter API's long-poll endpoint. */
export const WAITER_API_PATH = "/v1/wait";
/** The waiter's executable inside the reconciler image. */
export const WAITER_COMMAND = "digest-migrations-waiter";

export interface WaiterSettings {
  /** Image holding the waiter (the reconciler image). */
  image: string;
  /** Base URL of the reconciler's waiter API, e.g. http://digest-migrations.digest-migrations-system.svc:8443 */
  apiUrl: string;
}

/** Kubernetes container names are DNS labels: at most 63 characters. */
const CONTAINER_NAME_MAX = 63;

/** The waiter container's name for a Migrator (upstream's `migrate-wait-` prefix). */
export function waiterContainerName(migratorName: string): string {
  return `${WAITER_CONTAINER_PREFIX}${migratorName}`.slice(0, CONTAINER_NAME_MAX).replace(/-+$/, "");
}

export function isWaiterContainer(container: Pick<Container, "name">): boolean {
  return container.name.startsWith(WAITER_CONTAINER_PREFIX);
}

/**
 * The init container that holds a pod until its digest is migrated. Pod identity comes from the
 * downward API; the container asks for the Migrator and the gated application container by name.
 * Tiny resources and a securityContext that satisfies the `restricted` Pod Security Standard.
 */
export function waiterInitContainer(migratorName: string, appContainer: string, settings: WaiterSettings): Container {
  return {
    name: waiterContainerName(migratorName),
    image: settings.image,
    imagePullPolicy: "IfNotPresent",
    command: [WAITER_COMMAND],
    args: ["--api", settings.apiUrl, "--migrator", migratorName, "--container", appContainer],
    env: [
      { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
      { name: "POD_UID", valueFrom: { fieldRef: { fieldPath: "metadata.uid" } } },
    ],
    resources: {
      requests: { cpu: "10m", memory: "32Mi" },
      limits: { cpu: "100m", memory: "64Mi" },
    },
    securityContext: {
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    },
  };
}
