// Steps 1 to 3 of a plan (plan.ts): the pods a Migrator selects and the digest each gated container runs —
// pinned spec → status imageID → a probe pod on its node, read by readProbe (probe.ts) in whatever state the
// kubelet left it — the pins that follow from it, and the probe pods to create and delete.
import { pinImage, pinnedDigest } from "./image-ref.ts";
import { JobBuildError, gatedContainer } from "./job.ts";
import type { Container, KubeObject, Labels, Pod } from "./k8s.ts";
import { LABELS, REASONS } from "./migrator.ts";
import type { Migrator } from "./migrator.ts";
import { templateForPod } from "./owners.ts";
import type { TemplateForPod } from "./owners.ts";
import type { ObjectRef, Pin, ProbeDeletion, Snapshot } from "./plan.ts";
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
import { isGated, resolvePodDigest } from "./protocol.ts";
import type { Candidate, Resolution } from "./protocol.ts";

/**
 * A Migrator with gated pods is visited at least this often, whatever the events: a refused pin is
 * retried, a node's runtime read again. One with nothing gated waits for events (and the controller's
 * slow resync): planning is linear in the namespace's pods, so visiting every settled Migrator every
 * 30 s cost a third of a core at 200 Migrators × 5,000 pods (e2e/bench scale).
 */
export const SAFETY_REQUEUE_MS = 30_000;
/** A short wait: for a deleted probe's name to free, or a write to show in the cache. */
export const SOON_MS = 1000;

/** Pods the reconciler created itself (migration Job pods, probe pods) are never application pods. */
export function isOwnPod(pod: Pod): boolean {
  return pod.metadata.labels?.[LABELS.role] !== undefined;
}

/** Live pods: not being deleted and not finished. */
function isLive(pod: Pod): boolean {
  const phase = pod.status?.phase;
  return pod.metadata.deletionTimestamp === undefined && phase !== "Succeeded" && phase !== "Failed";
}

export const byName = <T extends KubeObject>(a: T, b: T): number =>
  (a.metadata.name ?? "") < (b.metadata.name ?? "") ? -1 : (a.metadata.name ?? "") > (b.metadata.name ?? "") ? 1 : 0;

export function ref(object: KubeObject): ObjectRef {
  return { name: object.metadata.name ?? "", uid: object.metadata.uid ?? "" };
}

function ageSeconds(object: KubeObject, now: Date): number {
  const created = Date.parse(object.metadata.creationTimestamp ?? "");
  return Number.isNaN(created) ? 0 : Math.max(0, (now.getTime() - created) / 1000);
}

/** One selected pod, as the plan sees it. */
export interface PodInfo {
  pod: Pod;
  /** The gated container, with a pin the cache does not show yet applied. */
  container: Container;
  candidate: Candidate;
  owner: TemplateForPod;
  /** Why its probe cannot answer (ProbeFailed, UnsupportedRuntime), if so. */
  probeProblem?: { reason: string; message: string };
}

/** What looking at the selected pods found and wants (steps 1 to 3). */
export interface Observed {
  infos: PodInfo[];
  /** Pods whose gated container cannot be found (spec.container). */
  problems: string[];
  pins: Pin[];
  /** Refused pins still wanted, as messages for PinFailed. */
  refused: string[];
  forgetPins: string[];
  probesWanted: Map<string, ProbeKey>;
  probesInUse: Set<string>;
  deleteProbes: ProbeDeletion[];
  createProbes: Pod[];
  /** Infinity: nothing waits on time. */
  requeueAfterMs: number;
}

/**
 * Steps 1 to 3 for the pods of `snapshot` that `select` selects (live application pods; in name order,
 * so the answer never depends on the order the cache listed them).
 */
export function observePods(snapshot: Snapshot, select: (labels: Labels | undefined) => boolean, now: Date): Observed {
  const pods = [...snapshot.pods].sort(byName);
  const selected = pods.filter((p) => !isOwnPod(p) && isLive(p) && select(p.metadata.labels));
  const seen = observe(snapshot, selected, new Map(pods.map((p) => [p.metadata.name ?? "", p])), now);
  planProbes(snapshot.migrator, pods, snapshot.nodes, seen);
  return seen;
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
    deleteProbes: [],
    createProbes: [],
    requeueAfterMs: Number.POSITIVE_INFINITY,
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
    if (gated) soon(SAFETY_REQUEUE_MS);
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
      const own = snapshot.migrator.spec.probePullTimeoutSeconds;
      const timeout = own ?? snapshot.probeTimeoutSeconds;
      if (age > timeout) {
        const budget = own === undefined ? `${timeout} s` : `${timeout} s, spec.probePullTimeoutSeconds`;
        const message = `${outcome.message} after ${Math.round(age)} s (more than ${budget})`;
        return { problem: { reason: REASONS.ProbeFailed, message }, keep: true };
      }
      return { keep: true, requeueAfterMs: Math.max(SOON_MS, (timeout - age) * 1000 + 500) };
    }
  }
}

/** Step 3: delete the Migrator's probes no pod needs any more, create the missing ones. */
function planProbes(migrator: Migrator, pods: readonly Pod[], nodes: Snapshot["nodes"], seen: Observed): void {
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
    seen.deleteProbes.push(deletion);
    // Wanted again (a newer pod, or a replacement): created once the deletion shows in the cache.
    if (seen.probesWanted.has(probe.metadata.name ?? "")) seen.requeueAfterMs = Math.min(seen.requeueAfterMs, SOON_MS);
  }
  seen.createProbes = [...seen.probesWanted]
    .filter(([probe]) => !present.has(probe))
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([, key]) => buildProbePod(migrator, key));
}

function withImage(pod: Pod, container: Container): Pod {
  return {
    ...pod,
    spec: { ...pod.spec, containers: pod.spec.containers.map((c) => (c.name === container.name ? container : c)) },
  };
}
