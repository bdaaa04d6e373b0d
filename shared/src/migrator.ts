// The Migrator API (migrations.coderanger.net/v1beta1), a drop-in for the upstream
// coderanger/migrations-operator: every upstream spec field keeps its meaning; status
// additions are optional. Names shared by the plugin and the reconciler live here so the two
// sides can never disagree on a label, an annotation or a container name.
import type { Condition, KubeObject, LabelSelector, Labels, ResourceRequirements } from "./k8s.ts";

export const GROUP = "migrations.coderanger.net";
export const VERSION = "v1beta1";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = "Migrator";
export const PLURAL = "migrators";

export interface MigratorSpec {
  /** Pods (and so workloads) this Migrator gates. Upstream: required. */
  selector: LabelSelector;
  /** Narrows which selected pods may serve as the template of the migration Job. */
  templateSelector?: LabelSelector;
  /** Replaces the template container's command in the migration Job. */
  command?: string[];
  /** Replaces the template container's args in the migration Job. */
  args?: string[];
  /** Replaces the template container's image in the migration Job (then the digest of this image is migrated). */
  image?: string;
  /** Name of the application container whose image is migrated; default: the first container. */
  container?: string;
  /** Labels merged into the migration Job's pod template. */
  labels?: Labels;
  /** Annotations merged into the migration Job's pod template. */
  annotations?: Labels;

  // Additions (optional; a Migrator without them behaves as upstream's): the migration Job's controls.

  /**
   * Seconds the migration Job may run (its spec.activeDeadlineSeconds): past them the Job controller stops
   * it, the Job fails with DeadlineExceeded and the Migrator says Failed. Default: the reconciler's
   * --job-active-deadline, else none.
   */
  activeDeadlineSeconds?: number;
  /** Pod failures the Job controller retries before the Job fails (its spec.backoffLimit). Default 0. */
  backoffLimit?: number;
  /**
   * Seconds after a migration Job succeeded before the reconciler deletes it — never before its digest is
   * recorded. Default: the reconciler's --job-ttl-after-finished, else kept while its digest is wanted.
   */
  ttlSecondsAfterFinished?: number;
  /** Resources of the migration container, in place of the application container's. */
  resources?: ResourceRequirements;
  /** Seconds a probe pod may pull before the Migrator says ProbeFailed. Default: the reconciler's --probe-pull-timeout (300). */
  probePullTimeoutSeconds?: number;
}

/** One digest that was migrated successfully (newest first in status.migratedDigests). */
export interface MigrationRecord {
  digest: string;
  /** The pinned image reference the Job ran, name[:tag]@digest. */
  image: string;
  job: string;
  completionTime: string;
}

export interface MigratorStatus {
  observedGeneration?: number;
  /** Upstream field: the digest (sha256:…) of the last successful migration — never a tag. */
  lastSuccessfulMigration?: string;
  /** lastSuccessfulMigration abbreviated (sha256: and 12 hex), for the Digest printer column. */
  lastSuccessfulMigrationShort?: string;
  /** The digest currently wanted (the newest pods' digest). */
  currentDigest?: string;
  /** The pinned image reference of currentDigest. */
  currentImage?: string;
  /** The Job that runs or ran currentDigest. */
  currentJob?: string;
  /** Bounded history of migrated digests, newest first; a rollback to one of them needs no Job. */
  migratedDigests?: MigrationRecord[];
  conditions?: Condition[];
}

export interface Migrator extends KubeObject {
  spec: MigratorSpec;
  status?: MigratorStatus;
}

/** The digests recorded as migrated (history plus lastSuccessfulMigration). */
export function migratedDigests(status: MigratorStatus | undefined): Set<string> {
  const set = new Set<string>();
  for (const record of status?.migratedDigests ?? []) if (typeof record?.digest === "string") set.add(record.digest);
  if (status?.lastSuccessfulMigration) set.add(status.lastSuccessfulMigration);
  return set;
}

/** How many migrated digests status.migratedDigests keeps. */
export const MIGRATED_DIGESTS_LIMIT = 20;

export const CONDITION_READY = "Ready";
export const CONDITION_MIGRATIONS_READY = "MigrationsReady";

/** Condition reasons, as Kubernetes wants them: CamelCase, one word. */
export const REASONS = {
  WaitingForPods: "WaitingForPods",
  WaitingForImageID: "WaitingForImageID",
  Probing: "Probing",
  ProbeFailed: "ProbeFailed",
  Running: "Running",
  Succeeded: "Succeeded",
  Failed: "Failed",
  NoDigest: "NoDigest",
  /** The API server refused to pin a gated pod's image (an admission policy, RBAC): it cannot be released. */
  PinFailed: "PinFailed",
  InvalidSpec: "InvalidSpec",
  TemplateNotFound: "TemplateNotFound",
  /**
   * The node's container runtime cannot answer a probe (CRI-O fails the probe's container before it
   * records an imageID): the digest of a gated pod there cannot be read; the message names the runtime.
   */
  UnsupportedRuntime: "UnsupportedRuntime",
} as const;
export type Reason = (typeof REASONS)[keyof typeof REASONS];

/** Event reasons that are not condition reasons. */
export const EVENT_REASONS = {
  /**
   * A migration Job was created with a spec.image of another repository by tag, so what it runs may
   * change under that tag (see migrationImage in job.ts).
   */
  MigrationImageNotPinned: "MigrationImageNotPinned",
} as const;

/** Reasons whose Events are of type Warning: someone has to act. */
export const WARNING_REASONS: ReadonlySet<string> = new Set([
  REASONS.Failed,
  REASONS.ProbeFailed,
  REASONS.NoDigest,
  REASONS.PinFailed,
  REASONS.InvalidSpec,
  REASONS.TemplateNotFound,
  REASONS.UnsupportedRuntime,
  EVENT_REASONS.MigrationImageNotPinned,
]);

/** Annotations and labels, all under the upstream API group. */
export const ANNOTATIONS = {
  /** On a pod or pod template (upstream): "true" means no waiter is injected. On a workload: opt-out. */
  noWait: `${GROUP}/no-wait`,
  /** On a migration Job and its pods: the digest it migrates. */
  digest: `${GROUP}/digest`,
  /** On a migration Job: the pinned image it runs. */
  image: `${GROUP}/image`,
  /** On a Migrator: set to any new value to retry the current digest after a failure. */
  retry: `${GROUP}/retry`,
  /** On a migration Job: the Migrator's retry annotation value it was created under. */
  retryHandled: `${GROUP}/retry-handled`,
  /** On a workload: generate a Migrator for it with this command (JSON array or a shell-style string). */
  command: `${GROUP}/command`,
  /** On a workload, with `command`: args of the generated Migrator (JSON array). */
  args: `${GROUP}/args`,
  /** On a workload, with `command`: the container of the generated Migrator. */
  container: `${GROUP}/container`,
} as const;

export const LABELS = {
  /** On Jobs and probe pods the reconciler creates: the Migrator's name. */
  migrator: `${GROUP}/migrator`,
  /** On objects the reconciler creates: "migration" (a Job and its pods) or "probe" (a probe pod). */
  role: `${GROUP}/role`,
  /** Kubernetes' recommended label, set on everything the reconciler creates. */
  managedBy: "app.kubernetes.io/managed-by",
} as const;

export const MANAGED_BY = "digest-migrations";

/** Upstream's waiter init container prefix; the Job cloner purges containers with it. */
export const WAITER_CONTAINER_PREFIX = "migrate-wait-";

/**
 * The pod volume holding the waiter's projected service-account token (audience WAITER_TOKEN_AUDIENCE),
 * which the plugin adds beside the waiters when waiter authentication is on; a migration Job drops it.
 */
export const WAITER_TOKEN_VOLUME = `${WAITER_CONTAINER_PREFIX}token`;

/** The name of the container in a migration Job (upstream's name). */
export const MIGRATION_CONTAINER_NAME = "migrations";
