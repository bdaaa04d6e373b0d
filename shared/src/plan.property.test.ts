// The invariants docs/how-it-works.md promises, over arbitrary snapshots: gated and released pods of
// three revisions on two nodes (one containerd, one CRI-O), their probes in any kubelet state with any
// digest, Jobs of any digest in any state, any history, retry annotation and remembered pins.
import t from "tap";
import fc from "fast-check";
import { digestFromImageID } from "./image-id.ts";
import { pinnedDigest } from "./image-ref.ts";
import { isOwnedBy, jobState, jobView } from "./job.ts";
import type { KubeObject, Pod, PodStatus } from "./k8s.ts";
import { REASONS, migratedDigests } from "./migrator.ts";
import { plan } from "./plan.ts";
import type { PinRecord, Plan, Snapshot } from "./plan.ts";
import { D1, D2, NOW, appPod, job, migrated, migrator, node, probeFor, snapshot } from "./plan-builders.ts";
import { isProbeOf, probeServes, readProbe } from "./probe.ts";
import { compareNewestFirst, isGated } from "./protocol.ts";
import * as kubelet from "./testdata/kubelet-statuses.ts";

const { IMAGE } = kubelet;
const DIGESTS = [IMAGE.digest, D1, D2] as const;

/** A probe status that reports `digest` (containerd's StartError), or one of the states without an answer. */
const probeStatus = fc.oneof(
  fc.constantFrom(...DIGESTS).map((digest): PodStatus => ({
    ...kubelet.PROBE_START_ERROR,
    containerStatuses: kubelet.PROBE_START_ERROR.containerStatuses!.map((s) => ({
      ...s,
      imageID: `${IMAGE.repository}@${digest}`,
    })),
  })),
  fc.constantFrom(
    kubelet.PROBE_CREATED_ONLY,
    kubelet.PROBE_CONTAINER_CREATING,
    kubelet.PROBE_CREATE_CONTAINER_ERROR,
    kubelet.PROBE_CREATE_CONTAINER_CONFIG_ERROR,
    kubelet.PROBE_ERR_IMAGE_PULL,
    kubelet.PROBE_IMAGE_PULL_BACK_OFF,
    kubelet.PROBE_REJECTED_OUT_OF_CPU,
    kubelet.PROBE_EVICTED_WHILE_PULLING,
    kubelet.PROBE_START_ERROR_CONFIG_ID,
  ),
);

const podSpec = fc.record({
  name: fc.constantFrom("a", "b", "c", "d", "e", "f"),
  created: fc.integer({ min: 0, max: 30 }),
  revision: fc.integer({ min: 1, max: 3 }),
  node: fc.constantFrom("node-1", "node-2"),
  waiter: fc.constantFrom("running", "running", "done"),
  /** The image in the spec: the tag, or pinned. */
  pinned: fc.option(fc.constantFrom(...DIGESTS), { nil: undefined }),
  /** What the kubelet reports the app container ran (released pods). */
  ran: fc.option(fc.constantFrom(...DIGESTS), { nil: undefined }),
  /** A pin this reconciler wrote or was refused for the pod. */
  remembered: fc.option(fc.record({ digest: fc.constantFrom(...DIGESTS), refused: fc.boolean() }), { nil: undefined }),
});

type PodSpec = typeof podSpec extends fc.Arbitrary<infer T> ? T : never;

function buildPod(p: PodSpec): Pod {
  const image = p.pinned === undefined ? IMAGE.tag : `${IMAGE.tag}@${p.pinned}`;
  const pod = appPod(p.name, {
    created: p.created,
    revision: p.revision,
    node: p.node,
    waiter: p.waiter,
    image,
  });
  if (p.waiter === "done" && p.ran !== undefined) {
    pod.status = {
      ...kubelet.RUNNING_PINNED,
      containerStatuses: kubelet.RUNNING_PINNED.containerStatuses!.map((s) => ({
        ...s,
        imageID: `${IMAGE.repository}@${p.ran}`,
      })),
    };
  }
  return pod;
}

const world = fc
  .record({
    pods: fc.uniqueArray(podSpec, { selector: (p) => p.name, maxLength: 5 }),
    probes: fc.array(fc.record({ of: fc.nat(4), created: fc.integer({ min: 0, max: 30 }), status: probeStatus }), {
      maxLength: 3,
    }),
    jobs: fc.uniqueArray(
      fc.record({
        digest: fc.constantFrom(...DIGESTS),
        state: fc.constantFrom<"active" | "succeeded" | "failed">("active", "succeeded", "failed"),
        retryHandled: fc.option(fc.constantFrom("1", "2"), { nil: undefined }),
        /** Why a failed Job failed (the Job controller's Failed condition). */
        failure: fc.constantFrom("BackoffLimitExceeded", "DeadlineExceeded"),
      }),
      { selector: (j) => j.digest, maxLength: 3 },
    ),
    history: fc.subarray([...DIGESTS]),
    retry: fc.option(fc.constantFrom("1", "2"), { nil: undefined }),
    crioOn: fc.constantFrom("none", "node-2"),
    probeTimeoutSeconds: fc.constantFrom(60, 300, 900),
    /** spec.ttlSecondsAfterFinished and the reconciler's default (Jobs finish 500 s before NOW). */
    ttl: fc.option(fc.constantFrom(0, 200, 1000), { nil: undefined }),
    defaultTtl: fc.option(fc.constantFrom(0, 1000), { nil: undefined }),
    deadline: fc.option(fc.constantFrom(30, 600), { nil: undefined }),
  })
  .map((w): Snapshot => {
    const m = migrator({
      status: w.history.length > 0 ? migrated(...w.history) : {},
      ...(w.retry ? { retry: w.retry } : {}),
      spec: {
        ...(w.ttl !== undefined ? { ttlSecondsAfterFinished: w.ttl } : {}),
        ...(w.deadline !== undefined ? { activeDeadlineSeconds: w.deadline } : {}),
      },
    });
    const pods = w.pods.map(buildPod);
    const probes = new Map<string, Pod>();
    for (const probe of w.probes) {
      const of = pods[probe.of % Math.max(1, pods.length)];
      if (of === undefined) continue;
      const built = probeFor(of, probe.created, probe.status, m);
      probes.set(built.metadata.name!, built);
    }
    const pins = new Map<string, PinRecord>();
    for (const p of w.pods) {
      if (p.remembered === undefined) continue;
      const record: PinRecord = { container: "app", image: `${IMAGE.tag}@${p.remembered.digest}` };
      if (p.remembered.refused) record.refused = "HTTP 403: denied";
      pins.set(`uid-${p.name}`, record);
    }
    return snapshot({
      migrator: m,
      pods: [...pods, ...probes.values()],
      jobs: w.jobs.map((j) => {
        const built = job(j.digest, j.state, { m, ...(j.retryHandled ? { retryHandled: j.retryHandled } : {}) });
        if (j.state === "failed") {
          built.status = { failed: 1, conditions: [{ type: "Failed", status: "True", reason: j.failure }] };
        }
        return built;
      }),
      nodes: new Map([
        ["node-1", node("node-1")],
        ["node-2", node("node-2", w.crioOn === "node-2" ? kubelet.NODE_INFO_CRIO : kubelet.NODE_INFO_CONTAINERD)],
      ]),
      pins,
      probeTimeoutSeconds: w.probeTimeoutSeconds,
      ...(w.defaultTtl !== undefined ? { jobDefaults: { ttlSecondsAfterFinished: w.defaultTtl } } : {}),
    });
  });

const shuffled = <T>(list: readonly T[], seed: number): T[] =>
  list
    .map((item, i) => ({ item, key: (i * 7919 + seed * 104729) % 1000003 }))
    .sort((a, b) => a.key - b.key)
    .map((x) => x.item);

const ownJobs = (s: Snapshot): KubeObject[] => s.jobs.filter((j) => isOwnedBy(j, s.migrator));
const appPods = (s: Snapshot): Pod[] =>
  s.pods.filter((p) => p.metadata.labels?.["migrations.coderanger.net/role"] === undefined);
const creates = (p: Plan): boolean => p.job.kind === "create";

/** The newest application pod by (revision, creationTimestamp, name), as the protocol orders them. */
function newestPod(s: Snapshot): Pod | undefined {
  const candidate = (pod: Pod) => ({
    name: pod.metadata.name ?? "",
    creationTimestamp: pod.metadata.creationTimestamp!,
    revision: pod.metadata.ownerReferences![0]!.name.replace("web-", ""),
    resolution: { kind: "pulling" as const },
  });
  return [...appPods(s)].sort((a, b) => compareNewestFirst(candidate(a), candidate(b)))[0];
}

const settings = { numRuns: 400 };

t.test("the same snapshot always gives the same plan, in whatever order the caches list it", async (t) => {
  fc.assert(
    fc.property(world, fc.nat(1000), (s, seed) => {
      const a = JSON.stringify(plan(s, NOW));
      const reordered = { ...s, pods: shuffled(s.pods, seed), jobs: shuffled(s.jobs, seed + 1) };
      return JSON.stringify(plan(s, NOW)) === a && JSON.stringify(plan(reordered, NOW)) === a;
    }),
    settings,
  );
  t.pass("checked");
});

t.test("never a second Job while one runs", async (t) => {
  fc.assert(
    fc.property(world, (s) => !ownJobs(s).some((j) => jobState(j) === "active") || !creates(plan(s, NOW))),
    settings,
  );
  t.pass("checked");
});

t.test("a success is recorded before anything is deleted", async (t) => {
  fc.assert(
    fc.property(world, (s) => {
      const p = plan(s, NOW);
      const deleted = [...p.staleJobs, ...(p.job.kind === "create" && p.job.replaces ? [p.job.replaces] : [])];
      if (p.job.kind === "record" && deleted.length > 0) return false;
      const recorded = migratedDigests(s.migrator.status);
      // Never a deleted Job whose success is not recorded yet.
      return deleted.every((d) => {
        const view = jobView(s.jobs.find((j) => j.metadata.name === d.name)!);
        return view.state !== "succeeded" || (view.digest !== undefined && recorded.has(view.digest));
      });
    }),
    settings,
  );
  t.pass("checked");
});

t.test("the worlds include recorded successes of the wanted digest deleted by their time to live", async (t) => {
  const samples = fc.sample(world, { numRuns: 400, seed: 17 });
  const expired = samples.filter((s) => {
    const p = plan(s, NOW);
    return p.staleJobs.some((d) => {
      const view = jobView(s.jobs.find((j) => j.metadata.name === d.name)!);
      return view.state === "succeeded" && view.digest === p.condition.currentDigest;
    });
  });
  t.ok(expired.length > 0, `${expired.length} of 400 (the properties above hold for them too)`);
});

t.test("no hot retry: a failed Job of the wanted digest stays, and is redone only for a new retry value", async (t) => {
  fc.assert(
    fc.property(world, (s) => {
      const p = plan(s, NOW);
      const wanted = p.condition.currentDigest;
      if (wanted === undefined) return true;
      const failed = ownJobs(s).find((j) => jobState(j) === "failed" && jobView(j).digest === wanted);
      if (failed === undefined) return true;
      if (p.staleJobs.some((d) => d.name === failed.metadata.name)) return false;
      if (p.job.kind !== "create") return true;
      const retry = s.migrator.metadata.annotations?.["migrations.coderanger.net/retry"] ?? "";
      return retry !== "" && retry !== (jobView(failed).retry ?? "") && p.job.replaces?.name === failed.metadata.name;
    }),
    settings,
  );
  t.pass("checked");
});

t.test(
  "a pin is justified: by the spec, the kubelet's imageID, a remembered pin, or a probe that serves the pod",
  async (t) => {
    fc.assert(
      fc.property(world, (s) => {
        const p = plan(s, NOW);
        return p.pins.every((pin) => {
          const pod = s.pods.find((x) => x.metadata.name === pin.name)!;
          const digest = pinnedDigest(pin.image);
          if (digest === undefined || !isGated(pod, "web")) return false;
          const ran = digestFromImageID(pod.status?.containerStatuses?.[0]?.imageID ?? "");
          if (ran.ok && ran.digest === digest) return true;
          if (s.pins.get(pod.metadata.uid!)?.image === pin.image) return true;
          return s.pods.some(
            (probe) =>
              isProbeOf(probe, s.migrator) &&
              probe.spec.nodeName === pod.spec.nodeName &&
              probeServes(probe.metadata.creationTimestamp, pod.metadata.creationTimestamp) &&
              readProbe(probe, undefined).kind === "digest" &&
              digestFromImageID(probe.status!.containerStatuses![0]!.imageID).ok &&
              (digestFromImageID(probe.status!.containerStatuses![0]!.imageID) as { digest: string }).digest === digest,
          );
        });
      }),
      settings,
    );
    t.pass("checked");
  },
);

t.test("a refused pin outranks every other reason", async (t) => {
  fc.assert(
    fc.property(world, (s) => {
      const refused = appPods(s).some(
        (pod) =>
          isGated(pod, "web") &&
          pinnedDigest(pod.spec.containers[0]!.image) === undefined &&
          s.pins.get(pod.metadata.uid!)?.refused !== undefined,
      );
      return !refused || plan(s, NOW).condition.reason === REASONS.PinFailed;
    }),
    settings,
  );
  t.pass("checked");
});

t.test("the newest pods decide the wanted digest, never an older pod's", async (t) => {
  fc.assert(
    fc.property(world, (s) => {
      const newest = newestPod(s);
      if (newest === undefined) return true;
      const p = plan(s, NOW);
      const digest = pinnedDigest(newest.spec.containers[0]?.image);
      if (digest !== undefined) return p.condition.currentDigest === digest;
      // Nothing can tell the newest pod's digest yet: the plan waits for it rather than take an older pod's.
      const ran = digestFromImageID(newest.status?.containerStatuses?.[0]?.imageID ?? "").ok;
      const remembered = s.pins.has(newest.metadata.uid!);
      const probed = s.pods.some(
        (probe) =>
          isProbeOf(probe, s.migrator) &&
          probe.spec.nodeName === newest.spec.nodeName &&
          probeServes(probe.metadata.creationTimestamp, newest.metadata.creationTimestamp) &&
          readProbe(probe, undefined).kind === "digest",
      );
      if (isGated(newest, "web") && !ran && !remembered && !probed) return p.condition.currentDigest === undefined;
      return true;
    }),
    settings,
  );
  t.pass("checked");
});

t.test("a rollback to a migrated digest needs no Job", async (t) => {
  fc.assert(
    fc.property(world, (s) => {
      const digest = pinnedDigest(newestPod(s)?.spec.containers[0]?.image);
      if (digest === undefined || !migratedDigests(s.migrator.status).has(digest)) return true;
      return !creates(plan(s, NOW));
    }),
    settings,
  );
  t.pass("checked");
});
