// Reading migration Jobs (batch/v1) into the decision's JobView: which digest a Job migrates
// (annotation `migrations.coderanger.net/digest`), whether it runs, succeeded or failed
// (`status.conditions[type=Complete|Failed]`, else `status.succeeded`/`status.failed` counts), and
// under which retry annotation value it was created.
import { ANNOTATIONS, API_VERSION, KIND, LABELS, migratorLabelValue } from "@digest-migrations/shared";
import type { JobView, KubeObject, Migrator } from "@digest-migrations/shared";

/** On a migration Job: the Migrator's retry annotation value it was created under. */
export const RETRY_HANDLED_ANNOTATION = `${ANNOTATIONS.retry}-handled`;

interface JobStatus {
  active?: number;
  succeeded?: number;
  failed?: number;
  completionTime?: string;
  conditions?: { type: string; status: string }[];
}

export function jobState(job: KubeObject): JobView["state"] {
  const status = (job.status ?? {}) as JobStatus;
  const condition = (type: string): boolean =>
    (status.conditions ?? []).some((c) => c.type === type && c.status === "True");
  if (condition("Complete") || (status.succeeded ?? 0) > 0) return "succeeded";
  if (condition("Failed") || (status.failed ?? 0) > 0) return "failed";
  return "active";
}

export function jobView(job: KubeObject): JobView {
  const annotations = job.metadata.annotations ?? {};
  const view: JobView = { name: job.metadata.name ?? "", state: jobState(job) };
  const digest = annotations[ANNOTATIONS.digest];
  if (digest) view.digest = digest;
  const retry = annotations[RETRY_HANDLED_ANNOTATION];
  if (retry) view.retry = retry;
  const image = annotations[ANNOTATIONS.image];
  if (image) view.image = image;
  const completion = ((job.status ?? {}) as JobStatus).completionTime;
  if (completion) view.completionTime = completion;
  return view;
}

/**
 * Is `job` a migration Job of `migrator`? It carries the migrator label and is controlled by the
 * Migrator's uid (a Job of a deleted and recreated Migrator of the same name is not ours).
 */
export function isJobOf(job: KubeObject, migrator: Migrator): boolean {
  if (job.metadata.labels?.[LABELS.migrator] !== migratorLabelValue(migrator.metadata.name ?? "")) return false;
  return (job.metadata.ownerReferences ?? []).some(
    (ref) =>
      ref.controller === true &&
      ref.kind === KIND &&
      ref.apiVersion === API_VERSION &&
      ref.uid === migrator.metadata.uid,
  );
}
