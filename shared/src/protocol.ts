// The digest protocol's decisions (docs/how-it-works.md, "The digest protocol"), as pure functions:
// which digest a pod runs, which digest is wanted, what to do about migration Jobs and how a success
// is recorded. plan.ts composes them (with probe.ts and the waiter protocol) into one Plan per
// Migrator; everything here is table-tested and never touches the network or the clock.
import { digestFromImageID } from "./image-id.ts";
import { digestProblem, pinnedDigest, shortDigest } from "./image-ref.ts";
import type { JobView } from "./job.ts";
import type { Pod } from "./k8s.ts";
import { MIGRATED_DIGESTS_LIMIT, REASONS, migratedDigests } from "./migrator.ts";
import type { MigrationRecord, MigratorStatus, Reason } from "./migrator.ts";
import { waiterContainerName } from "./waiter-protocol.ts";

// ---------------------------------------------------------------------------------------------
// 1. Resolving the digest a pod's gated container runs

/** How far the digest of one pod's gated container is known. */
export type Resolution =
  | { kind: "digest"; digest: string; source: "spec" | "status" | "probe" }
  /** Held by its waiter and never pulled: only a probe on its node can say what the tag means there. */
  | { kind: "needsProbe" }
  /** Not held by a waiter: the kubelet pulls it and reports status.containerStatuses[].imageID soon. */
  | { kind: "pulling" }
  /** The node reports an imageID that carries no repository digest: never guessed. */
  | { kind: "noDigest"; message: string };

/**
 * Is `pod` still held by the waiter of `migratorName`? The waiter is the init container named
 * `waiterContainerName(migratorName)`; it holds the pod until its status reports
 * `state.terminated.exitCode == 0` (the kubelet then starts the next init container or the app).
 * A pod without that init container is not gated by this Migrator.
 */
export function isGated(pod: Pod, migratorName: string): boolean {
  const name = waiterContainerName(migratorName);
  if (!(pod.spec.initContainers ?? []).some((c) => c.name === name)) return false;
  const status = (pod.status?.initContainerStatuses ?? []).find((s) => s.name === name);
  return status?.state?.terminated?.exitCode !== 0;
}

/**
 * The digest of container `container` of `pod`, in the protocol's order: the spec pinned by digest, then
 * the status imageID (`status.containerStatuses[name].imageID`), else a probe (gated pods) or the
 * kubelet's own pull (ungated pods). A status imageID without a repository digest is NoDigest.
 */
export function resolvePodDigest(pod: Pod, container: string, gated: boolean): Resolution {
  const spec = pod.spec.containers.find((c) => c.name === container);
  const fromSpec = pinnedDigest(spec?.image);
  if (fromSpec !== undefined) return { kind: "digest", digest: fromSpec, source: "spec" };
  const status = (pod.status?.containerStatuses ?? []).find((s) => s.name === container);
  const imageID = status?.imageID ?? "";
  if (imageID !== "") {
    const parsed = digestFromImageID(imageID);
    if (parsed.ok) return { kind: "digest", digest: parsed.digest, source: "status" };
    return { kind: "noDigest", message: `pod ${pod.metadata.name} container ${container}: ${parsed.message}` };
  }
  return gated ? { kind: "needsProbe" } : { kind: "pulling" };
}

// ---------------------------------------------------------------------------------------------
// 2. The wanted digest: the newest pods'

/** One selected pod, as the decisions need it. */
export interface Candidate {
  name: string;
  creationTimestamp?: string;
  /** The owner's revision number (ReplicaSet `deployment.kubernetes.io/revision`…), when kept. */
  revision?: string;
  resolution: Resolution;
}

function revisionNumber(revision: string | undefined): number | undefined {
  if (revision === undefined || !/^\d+$/.test(revision)) return undefined;
  return Number(revision);
}

/**
 * Orders candidates newest first by the key (owner revision, creationTimestamp, name), compared
 * lexicographically: a higher owner revision first (a Deployment rollback gets a new, higher
 * revision, so it counts as newest; a pod without one counts as revision 0), then the later
 * creationTimestamp, then the name — a total order, so the answer never depends on the order a
 * list or a watch delivered the pods.
 */
export function compareNewestFirst(a: Candidate, b: Candidate): number {
  const ra = revisionNumber(a.revision) ?? 0;
  const rb = revisionNumber(b.revision) ?? 0;
  if (ra !== rb) return rb - ra;
  const ta = timestamp(a.creationTimestamp);
  const tb = timestamp(b.creationTimestamp);
  if (ta !== tb) return tb - ta;
  return a.name < b.name ? 1 : a.name > b.name ? -1 : 0;
}

function timestamp(value: string | undefined): number {
  const parsed = value === undefined ? NaN : Date.parse(value);
  return Number.isNaN(parsed) ? 0 : parsed;
}

export type Wanted =
  | { kind: "none" }
  | { kind: "digest"; digest: string; pod: string }
  | { kind: "pending"; reason: Reason; message: string; pod: string };

/**
 * The digest to migrate: the digest of the newest candidate. Older pods never decide, so old and
 * new pods alive together cannot make the wanted digest flap. If the newest pod's digest is not
 * known yet, the answer is "pending" (with the reason) rather than an older pod's digest.
 */
export function wantedDigest(candidates: readonly Candidate[]): Wanted {
  const newest = [...candidates].sort(compareNewestFirst)[0];
  if (newest === undefined) return { kind: "none" };
  const r = newest.resolution;
  switch (r.kind) {
    case "digest":
      return { kind: "digest", digest: r.digest, pod: newest.name };
    case "needsProbe":
      return {
        kind: "pending",
        reason: REASONS.Probing,
        message: `probing the image digest of pod ${newest.name} on its node`,
        pod: newest.name,
      };
    case "pulling":
      return {
        kind: "pending",
        reason: REASONS.WaitingForImageID,
        message: `waiting for the kubelet to report the image digest (imageID) of pod ${newest.name}`,
        pod: newest.name,
      };
    case "noDigest":
      return { kind: "pending", reason: REASONS.NoDigest, message: r.message, pod: newest.name };
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Migration Jobs

export interface MigrationInput {
  wanted: Wanted;
  status: MigratorStatus | undefined;
  jobs: readonly JobView[];
  /** The Migrator's current retry annotation value ("" or undefined when absent). */
  retry?: string;
  /** Expected name of the Job of a digest (deterministic, from job.ts). */
  jobName(digest: string): string;
}

export type MigrationAction =
  /** A Job succeeded and its digest is not recorded: record it (before deleting anything). */
  | { kind: "record"; job: JobView }
  /** Create the Job of `digest`. */
  | { kind: "create"; digest: string }
  /** Delete the failed Job of the wanted digest and create it again (the retry annotation changed). */
  | { kind: "retry"; job: JobView; digest: string }
  /** Nothing to start now; the status says why. */
  | { kind: "none" };

export interface MigrationDecision {
  action: MigrationAction;
  /** Finished Jobs of digests no longer wanted (recorded already, or failed): delete them. */
  stale: string[];
  /** The condition to show, and whether the Migrator's migrations are ready. */
  ready: boolean;
  reason: Reason;
  message: string;
  /** The Job that runs or ran the wanted digest, if any. */
  currentJob?: string;
}

/**
 * What to do about migration Jobs. Invariants: a Job's success is recorded before anything is
 * deleted; a running Job is never interrupted, and while one runs no other is started (so a tag
 * that moves during a migration is handled after it); a failed Job is not recreated unless the
 * retry annotation got a new value; finished Jobs of digests no longer wanted are stale.
 */
export function decideMigration(input: MigrationInput): MigrationDecision {
  const migrated = migratedDigests(input.status);
  const unrecorded = input.jobs.find(
    (j) => j.state === "succeeded" && j.digest !== undefined && !migrated.has(j.digest),
  );
  const wanted = input.wanted;
  const wantedDigestValue = wanted.kind === "digest" ? wanted.digest : undefined;
  if (unrecorded !== undefined) {
    return {
      action: { kind: "record", job: unrecorded },
      stale: [],
      ready: false,
      reason: REASONS.Running,
      message: `Job ${unrecorded.name} migrated ${unrecorded.digest}; recording it`,
    };
  }
  const keep = new Set<string>();
  if (wantedDigestValue !== undefined) keep.add(wantedDigestValue);
  else if (input.status?.currentDigest) keep.add(input.status.currentDigest);
  const stale =
    wanted.kind === "digest"
      ? input.jobs
          .filter((j) => j.state !== "active" && (j.digest === undefined || !keep.has(j.digest)))
          .map((j) => j.name)
      : [];

  if (wanted.kind === "none") {
    const last = input.status?.lastSuccessfulMigration;
    return last
      ? {
          action: { kind: "none" },
          stale,
          ready: true,
          reason: REASONS.Succeeded,
          message: `no selected pods; ${last} is the last migrated digest`,
        }
      : {
          action: { kind: "none" },
          stale,
          ready: false,
          reason: REASONS.WaitingForPods,
          message: "no selected pods yet",
        };
  }
  if (wanted.kind === "pending") {
    return { action: { kind: "none" }, stale, ready: false, reason: wanted.reason, message: wanted.message };
  }

  const digest = wanted.digest;
  const own = input.jobs.find((j) => j.digest === digest);
  if (migrated.has(digest)) {
    const record = input.status?.migratedDigests?.find((r) => r.digest === digest);
    const decision: MigrationDecision = {
      action: { kind: "none" },
      stale,
      ready: true,
      reason: REASONS.Succeeded,
      message: `${digest} is migrated${record?.job ? ` (Job ${record.job})` : ""}; pods running it are released`,
    };
    const job = own?.name ?? record?.job;
    if (job !== undefined) decision.currentJob = job;
    return decision;
  }
  if (own !== undefined && own.state === "active") {
    return {
      action: { kind: "none" },
      stale,
      ready: false,
      reason: REASONS.Running,
      message: `Job ${own.name} is migrating ${digest}`,
      currentJob: own.name,
    };
  }
  const other = input.jobs.find((j) => j.state === "active");
  if (own !== undefined && own.state === "failed") {
    const retry = input.retry ?? "";
    if (retry !== "" && retry !== (own.retry ?? "") && other !== undefined) {
      return {
        action: { kind: "none" },
        stale,
        ready: false,
        reason: REASONS.Running,
        message: `Job ${other.name} is migrating ${other.digest ?? "an older digest"}; the retry of ${digest} starts after it`,
        currentJob: own.name,
      };
    }
    if (retry !== "" && retry !== (own.retry ?? "")) {
      return {
        action: { kind: "retry", job: own, digest },
        stale,
        ready: false,
        reason: REASONS.Running,
        message: `retrying the migration of ${digest} (retry annotation "${retry}")`,
        currentJob: own.name,
      };
    }
    return {
      action: { kind: "none" },
      stale,
      ready: false,
      reason: REASONS.Failed,
      message: `${failureText(own, digest)}; pods running it stay gated. ${failureAdvice(own)}`,
      currentJob: own.name,
    };
  }
  if (other !== undefined) {
    return {
      action: { kind: "none" },
      stale,
      ready: false,
      reason: REASONS.Running,
      message: `Job ${other.name} is migrating ${other.digest ?? "an older digest"}; ${digest} is migrated after it`,
    };
  }
  return {
    action: { kind: "create", digest },
    stale,
    ready: false,
    reason: REASONS.Running,
    message: `starting Job ${input.jobName(digest)} to migrate ${digest}`,
    currentJob: input.jobName(digest),
  };
}

/**
 * The migration Jobs whose time to live is over: succeeded, their digest recorded in `status` (the
 * status as written, so a Job is never deleted before its success is on record), and finished at least
 * `ttlSeconds` ago (status.completionTime, else the record's completionTime). Failed Jobs are never
 * expired: the failed Job of the wanted digest is what keeps it from being retried without a new retry
 * value, and the failed Jobs of other digests are stale anyway. `nextInMs`: when the next one expires.
 */
export function expiredJobs(
  jobs: readonly JobView[],
  status: MigratorStatus | undefined,
  ttlSeconds: number,
  now: Date,
): { expired: string[]; nextInMs?: number } {
  const recorded = migratedDigests(status);
  const expired: string[] = [];
  let nextInMs: number | undefined;
  for (const job of jobs) {
    if (job.state !== "succeeded" || job.digest === undefined || !recorded.has(job.digest)) continue;
    const record = status?.migratedDigests?.find((r) => r.digest === job.digest);
    const finished = Date.parse(job.completionTime ?? record?.completionTime ?? "");
    if (Number.isNaN(finished)) continue;
    const left = finished + ttlSeconds * 1000 - now.getTime();
    if (left <= 0) expired.push(job.name);
    else nextInMs = Math.min(nextInMs ?? Infinity, left);
  }
  return nextInMs === undefined ? { expired } : { expired, nextInMs };
}

/** What went wrong with the failed Job `job` of `digest`, from the Job controller's Failed condition. */
export function failureText(job: JobView, digest: string): string {
  const reason = job.failure?.reason;
  if (reason === "DeadlineExceeded") {
    const deadline = job.activeDeadlineSeconds === undefined ? "" : ` of ${job.activeDeadlineSeconds} s`;
    return `Job ${job.name} ran past its deadline${deadline} (spec.activeDeadlineSeconds) and was stopped before it migrated ${digest} (DeadlineExceeded)`;
  }
  if (reason === "BackoffLimitExceeded" && (job.backoffLimit ?? 0) > 0) {
    return `Job ${job.name} failed to migrate ${digest}: ${job.failedPods ?? "its"} pod(s) failed, ${job.backoffLimit} retries allowed (spec.backoffLimit)`;
  }
  if (reason !== undefined && reason !== "BackoffLimitExceeded") {
    return `Job ${job.name} failed to migrate ${digest} (${reason}${job.failure?.message ? `: ${job.failure.message}` : ""})`;
  }
  return `Job ${job.name} failed to migrate ${digest}`;
}

function failureAdvice(job: JobView): string {
  const fix =
    job.failure?.reason === "DeadlineExceeded" ? "Fix the cause or raise spec.activeDeadlineSeconds" : "Fix the cause";
  return `${fix}, then set the annotation migrations.coderanger.net/retry to a new value, or push a new image`;
}

/**
 * The status after `record` succeeded: the record first in migratedDigests (an older record of the
 * same digest removed), the history bounded, lastSuccessfulMigration set to its digest (and its
 * short form, which the Digest printer column shows).
 */
export function recordMigration(
  status: MigratorStatus | undefined,
  record: MigrationRecord,
  limit: number = MIGRATED_DIGESTS_LIMIT,
): MigratorStatus {
  const problem = digestProblem(record.digest);
  if (problem !== undefined) throw new Error(`cannot record migration of Job ${record.job}: ${problem}`);
  const history = [record, ...(status?.migratedDigests ?? []).filter((r) => r.digest !== record.digest)].slice(
    0,
    Math.max(1, limit),
  );
  return {
    ...status,
    lastSuccessfulMigration: record.digest,
    lastSuccessfulMigrationShort: shortDigest(record.digest),
    migratedDigests: history,
  };
}
