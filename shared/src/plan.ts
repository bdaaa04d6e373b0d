// One reconcile of one Migrator, decided: plan(snapshot, now) → Plan. The snapshot is what the caches
// hold for the Migrator (the pods of its namespace, their owners, probe pods, Jobs, nodes) plus the pins
// this reconciler wrote and has not yet seen in its cache; the Plan lists every write — pins, probe pods
// to create and delete, the migration Job to create or record, stale Jobs, the next status and its
// Events — and when to look again. The reconciler carries it out (reconciler/src/reconcile.ts) with the
// preconditions of each write; nothing here does I/O or reads a clock, so the whole digest protocol
// (docs/how-it-works.md) is table- and property-tested in plan.test.ts.
//
// The story, top to bottom:
//  1. the selected pods and, for each, the digest its gated container runs: pinned spec → status
//     imageID → a probe pod on its node (readProbe decides every state a kubelet leaves a probe in);
//  2. pins for gated pods whose digest is known (pod container images are mutable);
//  3. probe pods: create missing ones, delete those no pod needs any more;
//  4. the wanted digest (the newest pods') and the Job decision: record a success, create, retry, or wait;
//  5. the condition (a refused pin outranks every other reason) and its Event.
// Steps 1 to 3 are plan-pods.ts.
import { pinImage } from "./image-ref.ts";
import { JobBuildError, buildMigrationJob, isOwnedBy, jobTtl, jobView, migrationJobName } from "./job.ts";
import type { JobDefaults, MigrationImage } from "./job.ts";
import type { KubeObject, Labels, Node, Pod } from "./k8s.ts";
import { ANNOTATIONS, EVENT_REASONS, REASONS, WARNING_REASONS } from "./migrator.ts";
import type { MigrationRecord, Migrator, MigratorStatus } from "./migrator.ts";
import type { OwnerLookup } from "./owners.ts";
import { byName, observePods, ref } from "./plan-pods.ts";
import type { PodInfo } from "./plan-pods.ts";
import type { ProbeOutcome } from "./probe.ts";
import { compareNewestFirst, decideMigration, expiredJobs, recordMigration, wantedDigest } from "./protocol.ts";
import type { MigrationDecision, Wanted } from "./protocol.ts";
import { selectorsOf } from "./spec.ts";
import { nextStatus, readyReason, statusChanged } from "./status.ts";
import type { StatusInput } from "./status.ts";

export { SAFETY_REQUEUE_MS } from "./plan-pods.ts";

/** A pin this reconciler wrote, or was refused, that the pod cache may not show yet (by pod uid). */
export interface PinRecord {
  container: string;
  image: string;
  /** The API server's answer when it refused the pin (an admission policy, RBAC). */
  refused?: string;
}

export interface Snapshot {
  migrator: Migrator;
  /** The pods of the Migrator's namespace: application pods, its probe pods, Job pods. */
  pods: readonly Pod[];
  /** The Jobs of the Migrator's namespace. */
  jobs: readonly KubeObject[];
  /** The pods' owners (ReplicaSets, Deployments, StatefulSets, Jobs, CronJobs, Rollouts…). */
  owners: OwnerLookup;
  /** Nodes by name: a probe's runtime (node.status.nodeInfo.containerRuntimeVersion) explains its failures. */
  nodes: ReadonlyMap<string, Node>;
  /** Pins written or refused by this reconciler, by pod uid (see PinRecord). */
  pins: ReadonlyMap<string, PinRecord>;
  /** A probe still without an answer after this long is reported as ProbeFailed (unless spec.probePullTimeoutSeconds). */
  probeTimeoutSeconds: number;
  /** The install's defaults of the Job controls a Migrator leaves out (reconciler flags). */
  jobDefaults?: JobDefaults;
}

export interface ObjectRef {
  name: string;
  uid: string;
}

/** Set container `container` of pod `name` (uid precondition) to `image`. */
export interface Pin extends ObjectRef {
  container: string;
  image: string;
  /** The outcome the plan assumed: "refused" when the API server refused this pin before. */
  expect: "pinned" | "refused";
}

/** A probe pod to delete (uid precondition), and what it had found: the probe-duration metric's result. */
export interface ProbeDeletion extends ObjectRef {
  outcome: ProbeOutcome["kind"];
  creationTimestamp?: string;
}

/** A Job to delete: `expired` when its time to live is over (else its digest is no longer wanted). */
export interface StaleJob extends ObjectRef {
  expired?: true;
}

export interface PlannedEvent {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

export type JobAction =
  | { kind: "none" }
  /** A Job succeeded: its record is in the planned status, written before anything is deleted. */
  | { kind: "record"; record: MigrationRecord }
  /**
   * Create `job` (its name is derived from (Migrator, digest), so AlreadyExists means it was started
   * already), after deleting the failed Job it `replaces` (a retry). `warning` is recorded once it exists.
   */
  | { kind: "create"; digest: string; job: KubeObject; template: string; replaces?: ObjectRef; warning?: PlannedEvent };

export interface Plan {
  pins: Pin[];
  /** Pod uids whose PinRecord is no longer needed (the cache shows the pin, or the pod is not gated). */
  forgetPins: string[];
  deleteProbes: ProbeDeletion[];
  /** Probe pods to create (deterministic names: AlreadyExists means another reconcile created it). */
  createProbes: Pod[];
  job: JobAction;
  /**
   * Jobs to delete, uid precondition: finished Jobs of digests no longer wanted (recorded already, or
   * failed), and recorded successes past spec.ttlSecondsAfterFinished.
   */
  staleJobs: StaleJob[];
  /** The condition the Migrator should show. */
  condition: StatusInput;
  /** The next status, when it differs from the cached one (written with the cached resourceVersion). */
  status?: MigratorStatus;
  /** Events to record once the status is written (one per change of the Ready reason). */
  events: PlannedEvent[];
  /** Visit again after this many milliseconds (the state may change without an event); none: only on events. */
  requeueAfterMs?: number;
}

export function plan(snapshot: Snapshot, now: Date): Plan {
  const { migrator } = snapshot;
  const none: Plan = {
    pins: [],
    forgetPins: [],
    deleteProbes: [],
    createProbes: [],
    job: { kind: "none" },
    staleJobs: [],
    condition: { ready: false, reason: "", message: "" },
    events: [],
  };
  // Being deleted: its Jobs and probes go with it (ownerReferences, garbage collector).
  if (migrator.metadata.deletionTimestamp !== undefined) return none;
  const selectors = selectorsOf(migrator);
  if (!selectors.ok) {
    const condition = { ready: false, reason: REASONS.InvalidSpec, message: selectors.message };
    return { ...none, ...statusOf(migrator, migrator.status, condition, now) };
  }
  const seen = observePods(snapshot, selectors.select, now);

  // 4. The wanted digest and the Job decision.
  const wanted = wantedDigest(seen.infos.map((i) => i.candidate));
  const newest = wanted.kind === "none" ? undefined : seen.infos.find((i) => i.candidate.name === wanted.pod);
  const jobs = [...snapshot.jobs]
    .sort(byName)
    .filter((job) => isOwnedBy(job, migrator) && job.metadata.deletionTimestamp === undefined);
  const views = jobs.map(jobView);
  const retry = migrator.metadata.annotations?.[ANNOTATIONS.retry] ?? "";
  const name = migrator.metadata.name ?? "";
  const decide = (status: MigratorStatus | undefined): MigrationDecision =>
    decideMigration({ wanted, status, jobs: views, retry, jobName: (digest) => migrationJobName(name, digest) });
  const decision = decide(migrator.status);
  const condition = conditionOf(decision, wanted, newest, seen.problems);

  let base = migrator.status;
  let job: JobAction = { kind: "none" };
  let staleJobs: StaleJob[] = decision.stale.map((stale) => ref(jobs.find((j) => j.metadata.name === stale)!));
  let requeueAfterMs = seen.requeueAfterMs;
  const action = decision.action;
  if (action.kind === "record") {
    // The record is written first and nothing is deleted now; the next visit (at once) decides from it.
    const record = {
      digest: action.job.digest ?? "",
      image: action.job.image ?? "",
      job: action.job.name,
      completionTime: action.job.completionTime ?? now.toISOString(),
    };
    base = recordMigration(base, record);
    Object.assign(condition, pick(decide(base)));
    job = { kind: "record", record };
    staleJobs = [];
    requeueAfterMs = 0;
  } else if (action.kind === "create" || action.kind === "retry") {
    const created = planJob(snapshot, seen.infos, action.digest, retry, selectors.template);
    if (!created.ok) {
      condition.ready = false;
      condition.reason = created.reason;
      condition.message = created.message;
    } else {
      job = { kind: "create", digest: action.digest, job: created.job, template: created.template };
      if (action.kind === "retry") job.replaces = ref(jobs.find((j) => j.metadata.name === action.job.name)!);
      const warning = unpinnedWarning(created.job, created.image, action.digest);
      if (warning !== undefined) job.warning = warning;
    }
  }
  // Recorded successes past their time to live (never in the plan that records one: that waits for the write).
  const ttl = jobTtl(migrator.spec, snapshot.jobDefaults);
  if (ttl !== undefined && action.kind !== "record") {
    const due = expiredJobs(views, base, ttl, now);
    for (const name of due.expired) {
      if (!staleJobs.some((s) => s.name === name)) {
        staleJobs.push({ ...ref(jobs.find((j) => j.metadata.name === name)!), expired: true });
      }
    }
    if (due.nextInMs !== undefined) requeueAfterMs = Math.min(requeueAfterMs, due.nextInMs + 500);
  }
  // A refused pin outranks every other reason: those pods stay gated whatever else happens.
  if (seen.refused.length > 0) {
    condition.ready = false;
    condition.reason = REASONS.PinFailed;
    condition.message = seen.refused.slice(0, 3).join("; ");
  }
  return {
    pins: seen.pins,
    forgetPins: seen.forgetPins,
    deleteProbes: seen.deleteProbes,
    createProbes: seen.createProbes,
    job,
    staleJobs,
    ...statusOf(migrator, base, condition, now),
    ...(Number.isFinite(requeueAfterMs) ? { requeueAfterMs } : {}),
  };
}

/** The condition the Job decision describes, refined by what the pods showed. */
function conditionOf(
  decision: MigrationDecision,
  wanted: Wanted,
  newest: PodInfo | undefined,
  problems: readonly string[],
): StatusInput {
  const condition: StatusInput = pick(decision);
  if (wanted.kind === "pending" && wanted.reason === REASONS.Probing && newest?.probeProblem !== undefined) {
    condition.reason = newest.probeProblem.reason;
    condition.message = newest.probeProblem.message;
  }
  if (wanted.kind === "none" && problems.length > 0) {
    condition.reason = REASONS.InvalidSpec;
    condition.message = problems.slice(0, 3).join("; ");
  }
  if (wanted.kind === "digest" && newest !== undefined) {
    condition.currentDigest = wanted.digest;
    condition.currentImage = pinImage(newest.container.image ?? "", wanted.digest);
  }
  return condition;
}

function pick(decision: MigrationDecision): StatusInput {
  const input: StatusInput = { ready: decision.ready, reason: decision.reason, message: decision.message };
  if (decision.currentJob !== undefined) input.currentJob = decision.currentJob;
  return input;
}

type PlannedJob =
  | { ok: true; job: KubeObject; image: MigrationImage; template: string }
  | { ok: false; reason: string; message: string };

/**
 * The Job of `digest`, cloned from the pod template of the newest selected pod that runs `digest` and
 * matches spec.templateSelector (its owner chain's top-most template, what git declares).
 */
function planJob(
  snapshot: Snapshot,
  infos: readonly PodInfo[],
  digest: string,
  retry: string,
  templateSelect: (labels: Labels | undefined) => boolean,
): PlannedJob {
  const runners = infos
    .filter((i) => i.candidate.resolution.kind === "digest" && i.candidate.resolution.digest === digest)
    .filter((i) => templateSelect(i.pod.metadata.labels))
    .sort((a, b) => compareNewestFirst(a.candidate, b.candidate));
  const problems: string[] = [];
  for (const { owner, container } of runners) {
    if (!owner.ok) {
      problems.push(owner.message);
      continue;
    }
    const input = {
      migrator: snapshot.migrator,
      template: owner.template,
      digest,
      image: container.image ?? "",
      ...(snapshot.jobDefaults !== undefined ? { defaults: snapshot.jobDefaults } : {}),
    };
    try {
      const built = buildMigrationJob(retry === "" ? input : { ...input, retry });
      return { ok: true, ...built, template: `${owner.owner.kind}/${owner.owner.name}` };
    } catch (error) {
      if (error instanceof JobBuildError) return { ok: false, reason: REASONS.InvalidSpec, message: error.message };
      throw error;
    }
  }
  return {
    ok: false,
    reason: REASONS.TemplateNotFound,
    message:
      runners.length === 0
        ? `no selected pod running ${digest} matches spec.templateSelector`
        : `no pod template found for ${digest}: ${problems.slice(0, 2).join("; ")}`,
  };
}

/** The Warning a Job earns when it runs spec.image of another repository by tag (MigrationImage "unpinned"). */
function unpinnedWarning(job: KubeObject, image: MigrationImage, digest: string): PlannedEvent | undefined {
  if (image.pinning !== "unpinned") return undefined;
  return {
    type: "Warning",
    reason: EVENT_REASONS.MigrationImageNotPinned,
    message: `Job ${job.metadata.name ?? ""} runs spec.image ${image.image} as written: it is another repository than the application's, so the migration of ${digest} cannot be pinned to that digest and may run other bytes if the tag moves; pin spec.image by digest to avoid this`,
  };
}

/** Step 5: the next status from `base` (a record applied), when it changes, and the Event of a new reason. */
function statusOf(
  migrator: Migrator,
  base: MigratorStatus | undefined,
  condition: StatusInput,
  now: Date,
): Pick<Plan, "condition" | "status" | "events"> {
  const next = nextStatus(base, migrator, condition, now);
  if (!statusChanged(migrator.status, next)) return { condition, events: [] };
  const events: PlannedEvent[] =
    readyReason(migrator.status) === condition.reason
      ? []
      : [
          {
            type: WARNING_REASONS.has(condition.reason) ? "Warning" : "Normal",
            reason: condition.reason,
            message: condition.message,
          },
        ];
  return { condition, status: next, events };
}
