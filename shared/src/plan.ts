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
import { pinImage, pinnedDigest } from "./image-ref.ts";
import { JobBuildError, buildMigrationJob, gatedContainer, isOwnedBy, jobView, migrationJobName } from "./job.ts";
import type { MigrationImage } from "./job.ts";
import type { Container, KubeObject, Labels, Node, Pod } from "./k8s.ts";
import { ANNOTATIONS, EVENT_REASONS, LABELS, REASONS, WARNING_REASONS } from "./migrator.ts";
import type { MigrationRecord, Migrator, MigratorStatus } from "./migrator.ts";
import { templateForPod } from "./owners.ts";
import type { OwnerLookup, TemplateForPod } from "./owners.ts";
import {
  PROBE_RETRY_SECONDS,
  buildProbePod,
  isProbeOf,
  probeKeyOf,
  probeName,
  probeServes,
  readProbe,
} from "./probe.ts";
import type { ProbeKey, ProbeOutcome } from "./probe.ts";
import {
  compareNewestFirst,
  decideMigration,
  isGated,
  recordMigration,
  resolvePodDigest,
  wantedDigest,
} from "./protocol.ts";
import type { Candidate, MigrationDecision, Resolution, Wanted } from "./protocol.ts";
import { selectorsOf } from "./spec.ts";
import { nextStatus, readyReason, statusChanged } from "./status.ts";
import type { StatusInput } from "./status.ts";

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
  /** A probe still without an answer after this long is reported as ProbeFailed. */
  probeTimeoutSeconds: number;
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
  /** Finished Jobs of digests no longer wanted (recorded already, or failed): delete, uid precondition. */
  staleJobs: ObjectRef[];
  /** The condition the Migrator should show. */
  condition: StatusInput;
  /** The next status, when it differs from the cached one (written with the cached resourceVersion). */
  status?: MigratorStatus;
  /** Events to record once the status is written (one per change of the Ready reason). */
  events: PlannedEvent[];
  /** Visit again after this many milliseconds (the state may change without an event); none: only on events. */
  requeueAfterMs?: number;
}

/** Every Migrator is visited at least this often, whatever the events. */
export const SAFETY_REQUEUE_MS = 30_000;
/** A short wait: for a deleted probe's name to free, or a write to show in the cache. */
const SOON_MS = 1000;

/** Pods the reconciler created itself (migration Job pods, probe pods) are never application pods. */
export function isOwnPod(pod: Pod): boolean {
  return pod.metadata.labels?.[LABELS.role] !== undefined;
}

/** Live pods: not being deleted and not finished. */
function isLive(pod: Pod): boolean {
  const phase = pod.status?.phase;
  return pod.metadata.deletionTimestamp === undefined && phase !== "Succeeded" && phase !== "Failed";
}

const byName = <T extends KubeObject>(a: T, b: T): number =>
  (a.metadata.name ?? "") < (b.metadata.name ?? "") ? -1 : (a.metadata.name ?? "") > (b.metadata.name ?? "") ? 1 : 0;

function ref(object: KubeObject): ObjectRef {
  return { name: object.metadata.name ?? "", uid: object.metadata.uid ?? "" };
}

function ageSeconds(object: KubeObject, now: Date): number {
  const created = Date.parse(object.metadata.creationTimestamp ?? "");
  return Number.isNaN(created) ? 0 : Math.max(0, (now.getTime() - created) / 1000);
}

/** One selected pod, as the plan sees it. */
interface PodInfo {
  pod: Pod;
  /** The gated container, with a pin the cache does not show yet applied. */
  container: Container;
  candidate: Candidate;
  owner: TemplateForPod;
  /** Why its probe cannot answer (ProbeFailed, UnsupportedRuntime), if so. */
  probeProblem?: { reason: string; message: string };
}

/** What looking at the selected pods (step 1) found and wants. */
interface Observed {
  infos: PodInfo[];
  /** Pods whose gated container cannot be found (spec.container). */
  problems: string[];
  pins: Pin[];
  /** Refused pins still wanted, as messages for PinFailed. */
  refused: string[];
  forgetPins: string[];
  probesWanted: Map<string, ProbeKey>;
  probesInUse: Set<string>;
  requeueAfterMs: number;
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
  const pods = [...snapshot.pods].sort(byName);
  const selected = pods.filter((p) => !isOwnPod(p) && isLive(p) && selectors.select(p.metadata.labels));
  const seen = observe(snapshot, selected, new Map(pods.map((p) => [p.metadata.name ?? "", p])), now);
  const probes = planProbes(migrator, pods, snapshot.nodes, seen);

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
  let staleJobs: ObjectRef[] = decision.stale.map((stale) => ref(jobs.find((j) => j.metadata.name === stale)!));
  let requeueAfterMs = Math.min(seen.requeueAfterMs, probes.requeueAfterMs);
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
  // A refused pin outranks every other reason: those pods stay gated whatever else happens.
  if (seen.refused.length > 0) {
    condition.ready = false;
    condition.reason = REASONS.PinFailed;
    condition.message = seen.refused.slice(0, 3).join("; ");
  }
  return {
    pins: seen.pins,
    forgetPins: seen.forgetPins,
    deleteProbes: probes.deleteProbes,
    createProbes: probes.createProbes,
    job,
    staleJobs,
    ...statusOf(migrator, base, condition, now),
    requeueAfterMs,
  };
}

/** Step 1 and 2: the selected pods, the digest of each, pins, and which probes they need. */
function observe(snapshot: Snapshot, selected: readonly Pod[], podsByName: Map<string, Pod>, now: Date): Observed {
  const { migrator } = snapshot;
  const name = migrator.metadata.name ?? "";
  const seen: Observed = {
    infos: [],
    problems: [],
    pins: [],
    refused: [],
    forgetPins: [],
    probesWanted: new Map(),
    probesInUse: new Set(),
    requeueAfterMs: SAFETY_REQUEUE_MS,
  };
  const soon = (ms: number): void => {
    seen.requeueAfterMs = Math.min(seen.requeueAfterMs, ms);
  };
  for (const pod of selected) {
    let container: Container;
    try {
      container = gatedContainer(migrator.spec, pod.spec);
    } catch (error) {
      if (!(error instanceof JobBuildError)) throw error;
      seen.problems.push(`pod ${pod.metadata.name}: ${error.message}`);
      continue;
    }
    const uid = pod.metadata.uid ?? "";
    const gated = isGated(pod, name);
    const pin = (image: string, expect: Pin["expect"] = "pinned"): void => {
      seen.pins.push({ ...ref(pod), container: container.name, image, expect });
    };
    const pinTo = (digest: string): void => {
      if (gated) pin(pinImage(container.image ?? "", digest));
    };
    let remembered = snapshot.pins.get(uid);
    const settled =
      remembered !== undefined &&
      (remembered.container !== container.name ||
        pinnedDigest(container.image) !== undefined ||
        (remembered.refused !== undefined && !gated));
    if (settled) {
      seen.forgetPins.push(uid);
      remembered = undefined;
    }
    let resolution: Resolution;
    let probeProblem: PodInfo["probeProblem"];
    if (remembered?.refused !== undefined) {
      // Refused before: the digest is known; ask again (the policy may have changed), say PinFailed meanwhile.
      resolution = { kind: "digest", digest: pinnedDigest(remembered.image) ?? "", source: "probe" };
      pin(remembered.image, "refused");
      seen.refused.push(
        `the API server refused to pin container ${container.name} of pod ${pod.metadata.name} to ${remembered.image}: ${remembered.refused}`,
      );
    } else {
      // Written but not in the cache yet: resolve from the pin, never probe this pod again.
      if (remembered !== undefined) container = { ...container, image: remembered.image };
      const view = remembered === undefined ? pod : withImage(pod, container);
      resolution = resolvePodDigest(view, container.name, gated);
      // Held again after its app container ran once (e.g. a restarted sandbox): pin what it ran.
      if (resolution.kind === "digest" && resolution.source === "status") pinTo(resolution.digest);
      if (resolution.kind === "needsProbe" && pod.spec.nodeName) {
        const key = probeKeyOf(pod, container);
        const probeNameValue = probeName(name, key);
        const probe = podsByName.get(probeNameValue);
        const ours =
          probe !== undefined && isProbeOf(probe, migrator) && probe.metadata.deletionTimestamp === undefined;
        if (!ours) {
          // No probe, or one being deleted (creating it waits until the name is free).
          seen.probesWanted.set(probeNameValue, key);
        } else if (probeServes(probe.metadata.creationTimestamp, pod.metadata.creationTimestamp)) {
          const answer = answerOf(
            probe,
            readProbe(probe, snapshot.nodes.get(probe.spec.nodeName ?? "")),
            snapshot,
            now,
          );
          if (answer.resolution !== undefined) resolution = answer.resolution;
          if (answer.resolution?.kind === "digest") pinTo(answer.resolution.digest);
          if (answer.problem !== undefined) probeProblem = answer.problem;
          if (answer.keep) seen.probesInUse.add(probeNameValue);
          else if (answer.replace) seen.probesWanted.set(probeNameValue, key);
          if (answer.requeueAfterMs !== undefined) soon(answer.requeueAfterMs);
        }
        // An existing probe that started before this pod existed cannot answer for it: once it has
        // served its own pods it is deleted and a fresh one created.
      }
    }
    const candidate: Candidate = { name: pod.metadata.name ?? "", resolution };
    if (pod.metadata.creationTimestamp !== undefined) candidate.creationTimestamp = pod.metadata.creationTimestamp;
    const owner = templateForPod(pod, snapshot.owners);
    if (owner.ok && owner.revision !== undefined) candidate.revision = owner.revision;
    const info: PodInfo = { pod, container, candidate, owner };
    if (probeProblem !== undefined) info.probeProblem = probeProblem;
    seen.infos.push(info);
  }
  return seen;
}

/** What one probe's outcome means for the pods it serves and for the probe itself. */
interface ProbeAnswer {
  resolution?: Resolution;
  problem?: { reason: string; message: string };
  /** Keep the probe (its pods still need it); otherwise it is deleted. */
  keep: boolean;
  /** Delete it and create a new one (it ended without an answer). */
  replace?: boolean;
  requeueAfterMs?: number;
}

function answerOf(probe: Pod, outcome: ProbeOutcome, snapshot: Snapshot, now: Date): ProbeAnswer {
  const age = ageSeconds(probe, now);
  switch (outcome.kind) {
    case "digest":
      // Its pods are pinned in this plan: it has served them.
      return { resolution: { kind: "digest", digest: outcome.digest, source: "probe" }, keep: false };
    case "noDigest":
      // The answer will not change for these pods; a new probe would only say it again.
      return { resolution: { kind: "noDigest", message: outcome.message }, keep: true };
    case "failed":
      // The kubelet retries a failed pull or configuration with back-off, so once the registry, the tag
      // or the Secret is there the same probe answers and ProbeFailed clears by itself; a new probe
      // would only restart that back-off from zero.
      return { problem: { reason: REASONS.ProbeFailed, message: outcome.message }, keep: true };
    case "unsupported":
      return { problem: { reason: REASONS.UnsupportedRuntime, message: outcome.message }, keep: true };
    case "ended": {
      // The kubelet refused or evicted it; the condition may pass (resources freed), so try again later.
      const wait = PROBE_RETRY_SECONDS - age;
      const problem = {
        reason: REASONS.ProbeFailed,
        message: `${outcome.message}; ${wait > 0 ? `a new probe in ${Math.ceil(wait)} s` : "creating a new probe"}`,
      };
      if (wait > 0) return { problem, keep: true, requeueAfterMs: Math.max(SOON_MS, wait * 1000 + 500) };
      return { problem, keep: false, replace: true, requeueAfterMs: SOON_MS };
    }
    case "pending": {
      const timeout = snapshot.probeTimeoutSeconds;
      if (age > timeout) {
        const message = `${outcome.message} after ${Math.round(age)} s (more than ${timeout} s)`;
        return { problem: { reason: REASONS.ProbeFailed, message }, keep: true };
      }
      return { keep: true, requeueAfterMs: Math.max(SOON_MS, (timeout - age) * 1000 + 500) };
    }
  }
}

/** Step 3: delete the Migrator's probes no pod needs any more, create the missing ones. */
function planProbes(
  migrator: Migrator,
  pods: readonly Pod[],
  nodes: Snapshot["nodes"],
  seen: Observed,
): Pick<Plan, "deleteProbes" | "createProbes"> & { requeueAfterMs: number } {
  const deleteProbes: ProbeDeletion[] = [];
  let requeueAfterMs = SAFETY_REQUEUE_MS;
  const present = new Set<string>();
  for (const probe of pods) {
    present.add(probe.metadata.name ?? "");
    if (!isProbeOf(probe, migrator) || probe.metadata.deletionTimestamp !== undefined) continue;
    if (seen.probesInUse.has(probe.metadata.name ?? "")) continue;
    const deletion: ProbeDeletion = {
      ...ref(probe),
      outcome: readProbe(probe, nodes.get(probe.spec.nodeName ?? "")).kind,
    };
    if (probe.metadata.creationTimestamp !== undefined) deletion.creationTimestamp = probe.metadata.creationTimestamp;
    deleteProbes.push(deletion);
    // Wanted again (a newer pod, or a replacement): created once the deletion shows in the cache.
    if (seen.probesWanted.has(probe.metadata.name ?? "")) requeueAfterMs = SOON_MS;
  }
  const createProbes = [...seen.probesWanted]
    .filter(([probe]) => !present.has(probe))
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([, key]) => buildProbePod(migrator, key));
  return { deleteProbes, createProbes, requeueAfterMs };
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
    const input = { migrator: snapshot.migrator, template: owner.template, digest, image: container.image ?? "" };
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

function withImage(pod: Pod, container: Container): Pod {
  return {
    ...pod,
    spec: { ...pod.spec, containers: pod.spec.containers.map((c) => (c.name === container.name ? container : c)) },
  };
}
