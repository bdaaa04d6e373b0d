// The migration Job: one per (Migrator, digest), cloned from the application's own pod template so
// it runs with the app's Secrets, ConfigMaps, service account and volumes.
//
// Upstream semantics (coderanger/migrations-operator): the gated container (spec.container, else
// the first) becomes the only container, named "migrations"; spec.image/command/args replace the
// container's; its probes are removed (a migration serves nothing); restartPolicy is Never; the
// `migrate-wait-*` init containers are purged (a migration must not wait for itself); the pod
// template gets the label `migrations: <name>` plus spec.labels, and the annotations spec.annotations
// plus `no-wait: "true"`; the Job carries the Migrator's labels and a controller ownerReference to it.
// In addition: the image is pinned to the digest being migrated (so a moving tag cannot make the Job
// run other bytes than it records; see migrationImage for spec.image), the digest is annotated on the
// Job and its pods, our
// migrator/role/managed-by labels are set, backoffLimit is 0 (a failed migration is retried
// deliberately, not by the Job controller) unless spec.backoffLimit says otherwise, and the name is
// derived from (Migrator, digest) so a retry, a crash or a second replica can only ever create the same
// Job. The optional Job controls: spec.activeDeadlineSeconds (or the reconciler's default) becomes the
// Job's, spec.resources replaces the migration container's resources. (ttlSecondsAfterFinished is
// carried out by the reconciler, not set on the Job: the Job controller's own TTL could delete a Job
// before its success is recorded, and is an alpha feature on Kubernetes 1.20.)
//
// Read back (jobView), a Job is what the decisions need of it: which digest it migrates (annotation
// `migrations.coderanger.net/digest`), whether it runs, succeeded or failed
// (`status.conditions[type=Complete|Failed]`, else the `status.succeeded`/`status.failed` counts), and
// under which value of the Migrator's retry annotation it was created.
import { createHash } from "node:crypto";
import type { Container, KubeObject, Labels, PodSpec, PodTemplateSpec } from "./k8s.ts";
import { digestProblem, parseImageReference, pinImage, repositoryOf } from "./image-ref.ts";
import {
  ANNOTATIONS,
  API_VERSION,
  KIND,
  LABELS,
  MANAGED_BY,
  MIGRATION_CONTAINER_NAME,
  WAITER_CONTAINER_PREFIX,
  WAITER_TOKEN_VOLUME,
} from "./migrator.ts";
import { copyResources } from "./quantity.ts";
import type { Migrator, MigratorSpec } from "./migrator.ts";

export class JobBuildError extends Error {
  override name = "JobBuildError";
}

/** Job names end up in the `job-name` label of their pods: a DNS label, at most 63 characters. */
const DNS_LABEL_MAX = 63;
const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** Hex characters of the digest in a Job name (40 bits: distinct digests of one Migrator in practice). */
const DIGEST_PART = 10;
/** Hex characters of the name hash that keeps shortened or rewritten Migrator names distinct. */
const HASH_PART = 8;

/** The role label value of migration Jobs and their pods. */
export const MIGRATION_ROLE = "migration";
/** The upstream label on migration pods naming the Migrator. */
export const UPSTREAM_MIGRATOR_LABEL = "migrations";

function shortHash(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex").slice(0, HASH_PART);
}

/**
 * The name of the Job that migrates `digest` for the Migrator `migratorName`: `<migrator>-<10 hex of
 * the digest>` when that is a DNS label of at most 63 characters; otherwise the Migrator name is
 * shortened (and dots and other characters a label cannot hold become "-") and a hash of the full
 * name is added, `<shortened>-<8 hex>-<10 hex>`, so distinct Migrators keep distinct names. The
 * name is the idempotency key of a migration: it must never change for the same input.
 */
export function migrationJobName(migratorName: string, digest: string): string {
  if (typeof migratorName !== "string" || migratorName === "") {
    throw new JobBuildError(`cannot name a migration Job: the Migrator name is empty`);
  }
  const problem = digestProblem(digest);
  if (problem !== undefined) {
    throw new JobBuildError(`cannot name the migration Job of Migrator "${migratorName}": ${problem}`);
  }
  const hex = digest.slice(digest.indexOf(":") + 1, digest.indexOf(":") + 1 + DIGEST_PART);
  const plain = `${migratorName}-${hex}`;
  if (DNS_LABEL_RE.test(migratorName) && plain.length <= DNS_LABEL_MAX) return plain;
  const room = DNS_LABEL_MAX - (1 + HASH_PART + 1 + DIGEST_PART);
  const prefix = migratorName
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .slice(0, room)
    .replace(/^-+|-+$/g, "");
  const tail = `${shortHash(migratorName)}-${hex}`;
  return prefix === "" ? tail : `${prefix}-${tail}`;
}

/**
 * The value of label `migrations.coderanger.net/migrator` (and upstream's `migrations`) for a
 * Migrator: its name when that fits a label value (at most 63 characters), else a shortened name
 * with a hash of the full name. Select a Migrator's Jobs and pods with this value.
 */
export function migratorLabelValue(migratorName: string): string {
  if (migratorName.length <= DNS_LABEL_MAX) return migratorName;
  const prefix = migratorName.slice(0, DNS_LABEL_MAX - 1 - HASH_PART).replace(/[^A-Za-z0-9]+$/, "");
  return `${prefix}-${shortHash(migratorName)}`;
}

/** The gated application container: spec.container by name, else the first container. */
export function gatedContainer(spec: Pick<MigratorSpec, "container">, podSpec: PodSpec): Container {
  const containers = Array.isArray(podSpec.containers) ? podSpec.containers : [];
  if (spec.container !== undefined && spec.container !== "") {
    const found = containers.find((c) => c.name === spec.container);
    if (found === undefined) {
      const names = containers.map((c) => `"${c.name}"`).join(", ");
      throw new JobBuildError(
        `container "${spec.container}" (spec.container) is not in the pod template (containers: ${names || "none"})`,
      );
    }
    return found;
  }
  const first = containers[0];
  if (first === undefined) throw new JobBuildError("the pod template has no containers");
  return first;
}

export interface MigrationJobInput {
  migrator: Migrator;
  /** The application's pod template (from templateForPod / podTemplateOf); it is not modified. */
  template: PodTemplateSpec;
  /** The digest to migrate, `sha256:…`. */
  digest: string;
  /** The application image `digest` was resolved from; default the gated container's image in `template`. */
  image?: string;
  /** The Migrator's retry annotation value this Job answers, if any (annotated as retry-handled). */
  retry?: string;
  /** The reconciler's defaults for Job controls the Migrator leaves out. */
  defaults?: JobDefaults;
}

/** Install-wide defaults of the Job controls (reconciler flags); a Migrator's own field wins. */
export interface JobDefaults {
  /** --job-active-deadline */
  activeDeadlineSeconds?: number;
  /** --job-ttl-after-finished */
  ttlSecondsAfterFinished?: number;
}

/** The deadline a new migration Job of `spec` gets, if any. */
export function jobDeadline(
  spec: Pick<MigratorSpec, "activeDeadlineSeconds">,
  defaults: JobDefaults = {},
): number | undefined {
  return spec.activeDeadlineSeconds ?? defaults.activeDeadlineSeconds;
}

/** How long a succeeded, recorded migration Job of `spec` is kept, if not for as long as its digest is wanted. */
export function jobTtl(
  spec: Pick<MigratorSpec, "ttlSecondsAfterFinished">,
  defaults: JobDefaults = {},
): number | undefined {
  return spec.ttlSecondsAfterFinished ?? defaults.ttlSecondsAfterFinished;
}

/** A migration Job and the image it runs (whose `pinning` says whether the Migrator needs a warning). */
export interface MigrationJob {
  job: KubeObject;
  image: MigrationImage;
}

/** The image a migration Job runs, and why. */
export interface MigrationImage {
  image: string;
  /**
   * "digest": pinned to the migrated digest (the application's image, or spec.image in the same
   * repository); "spec": spec.image as written because it names its own digest; "unpinned": spec.image
   * names another repository by tag, so it runs as written and may change under the same tag.
   */
  pinning: "digest" | "spec" | "unpinned";
}

/**
 * Which image migrates `digest`. The migration is keyed on the digest of the application image that
 * lands on the node; upstream's spec.image (a separate migrations image) keeps its meaning:
 * - unset: the application image, pinned to the digest;
 * - in the same repository as the application image (another tag, or the same): pinned to the digest,
 *   since that digest is the application's bytes in that repository;
 * - pinned by its own digest (`name@sha256:…`): as written;
 * - another repository by tag: as written — the application's digest does not exist there, so the Job
 *   cannot be pinned; the caller should warn that the tag may move.
 * Throws ImageReferenceError for a malformed reference.
 */
export function migrationImage(specImage: string | undefined, appImage: string, digest: string): MigrationImage {
  if (specImage === undefined || specImage === "") return { image: pinImage(appImage, digest), pinning: "digest" };
  const spec = parseImageReference(specImage);
  if (repositoryOf(specImage) === repositoryOf(appImage)) {
    return { image: pinImage(specImage, digest), pinning: "digest" };
  }
  if (spec.digest !== undefined) return { image: specImage, pinning: "spec" };
  return { image: specImage, pinning: "unpinned" };
}

/** Fields a live pod's spec may carry that a new pod must not: scheduler and admission results. */
const POD_ONLY_FIELDS = ["nodeName", "ephemeralContainers", "priority"] as const;

/** Builds the batch/v1 Job that migrates `digest` for `migrator`. Throws JobBuildError naming the Migrator. */
export function buildMigrationJob(input: MigrationJobInput): MigrationJob {
  const { migrator, template, digest } = input;
  const { name, namespace, uid } = migrator.metadata;
  const where = `Migrator ${namespace ?? ""}/${name ?? "(unnamed)"}`;
  if (name === undefined || name === "") throw new JobBuildError(`${where}: metadata.name is required`);
  if (uid === undefined || uid === "") {
    throw new JobBuildError(`${where}: metadata.uid is required for the Job's ownerReference`);
  }
  const spec: MigratorSpec = migrator.spec ?? { selector: {} };
  if (
    typeof template !== "object" ||
    template === null ||
    typeof template.spec !== "object" ||
    template.spec === null
  ) {
    throw new JobBuildError(`${where}: the pod template has no spec`);
  }

  let container: Container;
  try {
    container = gatedContainer(spec, template.spec);
  } catch (error) {
    throw new JobBuildError(`${where}: ${(error as Error).message}`);
  }
  const appImage = input.image ?? container.image;
  if (appImage === undefined || appImage === "") {
    throw new JobBuildError(`${where}: container "${container.name}" has no image`);
  }
  let image: MigrationImage;
  try {
    image = migrationImage(spec.image, appImage, digest);
  } catch (error) {
    throw new JobBuildError(`${where}: ${(error as Error).message}`);
  }
  const jobName = migrationJobName(name, digest);
  const pinned = image.image;

  const migration: Container = structuredClone(container);
  migration.name = MIGRATION_CONTAINER_NAME;
  migration.image = pinned;
  if (spec.command !== undefined && spec.command !== null) migration.command = [...spec.command];
  if (spec.args !== undefined && spec.args !== null) migration.args = [...spec.args];
  // Probes would rarely pass for a one-shot command, and a failing liveness probe would kill it.
  delete migration.readinessProbe;
  delete migration.livenessProbe;
  delete migration.startupProbe;
  // A migration may need other resources than the application (more memory), or a namespace's quota
  // may ask for them.
  if (spec.resources !== undefined && spec.resources !== null) migration.resources = copyResources(spec.resources);

  const podSpec: PodSpec = structuredClone(template.spec);
  podSpec.containers = [migration];
  podSpec.restartPolicy = "Never";
  const initContainers = (podSpec.initContainers ?? []).filter((c) => !c.name.startsWith(WAITER_CONTAINER_PREFIX));
  if (initContainers.length > 0) podSpec.initContainers = initContainers;
  else delete podSpec.initContainers;
  // The waiters' token volume serves only the waiters, which are gone.
  const volumes = (Array.isArray(podSpec["volumes"]) ? (podSpec["volumes"] as { name?: unknown }[]) : []).filter(
    (v) => v.name !== WAITER_TOKEN_VOLUME,
  );
  if (volumes.length > 0) podSpec["volumes"] = volumes;
  else delete podSpec["volumes"];
  for (const field of POD_ONLY_FIELDS) delete podSpec[field];

  const ours: Labels = {
    [LABELS.migrator]: migratorLabelValue(name),
    [LABELS.role]: MIGRATION_ROLE,
    [LABELS.managedBy]: MANAGED_BY,
  };
  const podLabels: Labels = { [UPSTREAM_MIGRATOR_LABEL]: migratorLabelValue(name), ...spec.labels, ...ours };
  const podAnnotations: Labels = { ...spec.annotations, [ANNOTATIONS.noWait]: "true", [ANNOTATIONS.digest]: digest };

  const metadata: KubeObject["metadata"] = {
    name: jobName,
    labels: { ...migrator.metadata.labels, ...ours },
    annotations: {
      [ANNOTATIONS.digest]: digest,
      [ANNOTATIONS.image]: pinned,
      ...(input.retry ? { [ANNOTATIONS.retryHandled]: input.retry } : {}),
    },
    ownerReferences: [{ apiVersion: API_VERSION, kind: KIND, name, uid, controller: true, blockOwnerDeletion: true }],
  };
  if (namespace !== undefined) metadata.namespace = namespace;
  const deadline = jobDeadline(spec, input.defaults);
  const job: KubeObject = {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata,
    spec: {
      backoffLimit: spec.backoffLimit ?? 0,
      ...(deadline !== undefined ? { activeDeadlineSeconds: deadline } : {}),
      template: { metadata: { labels: podLabels, annotations: podAnnotations }, spec: podSpec },
    },
  };
  return { job, image };
}

// ---------------------------------------------------------------------------------------------
// Reading migration Jobs back

/** One migration Job of the Migrator, as the decisions need it. */
export interface JobView {
  name: string;
  /** The `migrations.coderanger.net/digest` annotation. */
  digest?: string;
  state: "active" | "succeeded" | "failed";
  /** The Migrator's retry annotation value the Job was created under. */
  retry?: string;
  image?: string;
  /** When it succeeded (status.completionTime). */
  completionTime?: string;
  /** Why it failed: the Failed condition's reason and message (DeadlineExceeded, BackoffLimitExceeded). */
  failure?: { reason: string; message: string };
  /** Its spec.activeDeadlineSeconds and spec.backoffLimit, to explain a failure. */
  activeDeadlineSeconds?: number;
  backoffLimit?: number;
  /** Pods that failed (status.failed). */
  failedPods?: number;
}

interface JobStatus {
  active?: number;
  succeeded?: number;
  failed?: number;
  completionTime?: string;
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
}

interface JobSpec {
  backoffLimit?: unknown;
  activeDeadlineSeconds?: unknown;
}

function whole(value: unknown): number | undefined {
  return typeof value === "number" && Number.isInteger(value) ? value : undefined;
}

/**
 * The Job controller's verdict: a Complete or Failed condition; before it writes one, a succeeded pod, or
 * more failed pods than spec.backoffLimit allows (with backoffLimit > 0 a failed pod alone is a retry).
 */
export function jobState(job: KubeObject): JobView["state"] {
  const status = (job.status ?? {}) as JobStatus;
  const condition = (type: string): boolean =>
    (status.conditions ?? []).some((c) => c.type === type && c.status === "True");
  if (condition("Complete") || (status.succeeded ?? 0) > 0) return "succeeded";
  const backoffLimit = whole(((job.spec ?? {}) as JobSpec).backoffLimit) ?? 0;
  if (condition("Failed") || (status.failed ?? 0) > backoffLimit) return "failed";
  return "active";
}

export function jobView(job: KubeObject): JobView {
  const annotations = job.metadata.annotations ?? {};
  const view: JobView = { name: job.metadata.name ?? "", state: jobState(job) };
  const digest = annotations[ANNOTATIONS.digest];
  if (digest) view.digest = digest;
  const retry = annotations[ANNOTATIONS.retryHandled];
  if (retry) view.retry = retry;
  const image = annotations[ANNOTATIONS.image];
  if (image) view.image = image;
  const status = (job.status ?? {}) as JobStatus;
  if (status.completionTime) view.completionTime = status.completionTime;
  const spec = (job.spec ?? {}) as JobSpec;
  const deadline = whole(spec.activeDeadlineSeconds);
  if (deadline !== undefined) view.activeDeadlineSeconds = deadline;
  const backoffLimit = whole(spec.backoffLimit);
  if (backoffLimit !== undefined) view.backoffLimit = backoffLimit;
  if (typeof status.failed === "number" && status.failed > 0) view.failedPods = status.failed;
  if (view.state === "failed") {
    const failed = (status.conditions ?? []).find((c) => c.type === "Failed" && c.status === "True");
    if (failed?.reason) view.failure = { reason: failed.reason, message: failed.message ?? "" };
  }
  return view;
}

/**
 * Is `object` (a Job or a pod) one the reconciler created for `migrator`? It carries the migrator label
 * and a controller ownerReference to the Migrator's uid (an object of a deleted and recreated Migrator
 * of the same name is not ours).
 */
export function isOwnedBy(object: KubeObject, migrator: Migrator): boolean {
  if (object.metadata.labels?.[LABELS.migrator] !== migratorLabelValue(migrator.metadata.name ?? "")) return false;
  return (object.metadata.ownerReferences ?? []).some(
    (ref) =>
      ref.controller === true &&
      ref.kind === KIND &&
      ref.apiVersion === API_VERSION &&
      ref.uid === migrator.metadata.uid,
  );
}
