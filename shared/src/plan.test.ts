// plan(): one table per part of the story — the probe in every state a kubelet leaves it in, pins
// (and the pins the cache has not caught up with, or the API server refused), the Job decision, the
// status and its Events. The invariants over arbitrary snapshots are in plan.property.test.ts.
import t from "tap";
import type { Pod, PodStatus } from "./k8s.ts";
import { REASONS } from "./migrator.ts";
import { SAFETY_REQUEUE_MS, plan } from "./plan.ts";
import type { Plan, Snapshot } from "./plan.ts";
import { D1, D2, NOW, appPod, at, job, migrated, migrator, node, owners, probeFor, snapshot } from "./plan-builders.ts";
import * as kubelet from "./testdata/kubelet-statuses.ts";

const { IMAGE } = kubelet;
const PINNED = IMAGE.pinned;
const reasonOf = (p: Plan): string => p.condition.reason;

t.test("nothing to do for a Migrator being deleted", async (t) => {
  const p = plan(snapshot({ migrator: migrator({ deleted: true }), pods: [appPod("web-a")] }), NOW);
  t.same([p.pins, p.createProbes, p.deleteProbes, p.staleJobs, p.events], [[], [], [], [], []]);
  t.equal(p.job.kind, "none");
  t.equal(p.status, undefined);
  t.equal(p.requeueAfterMs, undefined);
});

t.test("an invalid spec: InvalidSpec naming the field, and nothing else", async (t) => {
  const bad = migrator({ spec: { selector: { matchExpressions: [{ key: "app", operator: "In", values: [] }] } } });
  const p = plan(snapshot({ migrator: bad, pods: [appPod("web-a")] }), NOW);
  t.equal(reasonOf(p), REASONS.InvalidSpec);
  t.match(p.condition.message, /spec\.selector\.matchExpressions\[0\]\.values/);
  t.same(p.createProbes, []);
  t.same(
    p.events.map((e) => [e.type, e.reason]),
    [["Warning", REASONS.InvalidSpec]],
  );
});

t.test("no selected pods: WaitingForPods, or Succeeded with the last digest", async (t) => {
  t.equal(reasonOf(plan(snapshot(), NOW)), REASONS.WaitingForPods);
  const other = appPod("other", { labels: { app: "other" } });
  t.equal(reasonOf(plan(snapshot({ pods: [other] }), NOW)), REASONS.WaitingForPods, "unselected pods do not count");
  const done = appPod("old", { status: { ...kubelet.RUNNING_PINNED, phase: "Succeeded" } });
  t.equal(reasonOf(plan(snapshot({ pods: [done] }), NOW)), REASONS.WaitingForPods, "finished pods do not count");
  const p = plan(snapshot({ migrator: migrator({ status: migrated(D1) }) }), NOW);
  t.equal(reasonOf(p), REASONS.Succeeded);
  t.equal(p.condition.ready, true);
  t.equal(p.requeueAfterMs, SAFETY_REQUEUE_MS);
});

t.test("spec.container missing from the pods: InvalidSpec naming the pod", async (t) => {
  const p = plan(snapshot({ migrator: migrator({ spec: { container: "worker" } }), pods: [appPod("web-a")] }), NOW);
  t.equal(reasonOf(p), REASONS.InvalidSpec);
  t.match(p.condition.message, /pod web-a: container "worker" \(spec\.container\) is not in the pod template/);
});

t.test("a gated pod without a probe: a probe on its node, Probing", async (t) => {
  const pod = appPod("web-a", { node: "node-2" });
  const p = plan(snapshot({ pods: [pod] }), NOW);
  t.equal(p.createProbes.length, 1);
  const probe = p.createProbes[0]!;
  t.equal(probe.spec.nodeName, "node-2");
  t.equal(probe.spec.containers[0]?.image, IMAGE.tag);
  t.equal(probe.spec.containers[0]?.imagePullPolicy, "Always", "the pod's pull policy");
  t.equal(reasonOf(p), REASONS.Probing);
  t.same(p.pins, []);
  const twice = plan(snapshot({ pods: [pod, appPod("web-b", { node: "node-2", created: 1 })] }), NOW);
  t.equal(twice.createProbes.length, 1, "one probe serves every gated pod of a node");
  const ungatedNode = appPod("web-c");
  delete ungatedNode.spec.nodeName;
  t.same(plan(snapshot({ pods: [ungatedNode] }), NOW).createProbes, [], "not scheduled yet: no probe");
});

/** A gated pod created at 0 s, its probe at 5 s, the probe in `status`, on a node running `runtime`. */
function probing(
  status: PodStatus,
  nodeInfo: Record<string, string> = kubelet.NODE_INFO_CONTAINERD,
  probeAt = 5,
): Snapshot {
  const pod = appPod("web-a", { created: 0 });
  return snapshot({
    pods: [pod, probeFor(pod, probeAt, status)],
    nodes: new Map([["node-1", node("node-1", nodeInfo)]]),
  });
}

t.test("the probe in every state a kubelet leaves it in", async (t) => {
  const cases: {
    name: string;
    snapshot: Snapshot;
    reason: string;
    message?: RegExp;
    pinned: boolean;
    probe: "kept" | "deleted";
    requeueAfterMs?: number;
  }[] = [
    {
      name: "created, no status yet",
      snapshot: probing(kubelet.PROBE_CREATED_ONLY, kubelet.NODE_INFO_CONTAINERD, 590),
      reason: REASONS.Probing,
      pinned: false,
      probe: "kept",
    },
    {
      name: "ContainerCreating: wait, at most until the pull budget is spent",
      snapshot: probing(kubelet.PROBE_CONTAINER_CREATING, kubelet.NODE_INFO_CONTAINERD, 590),
      reason: REASONS.Probing,
      pinned: false,
      probe: "kept",
      requeueAfterMs: SAFETY_REQUEUE_MS,
    },
    {
      name: "containerd StartError with imageID: pinned, probe deleted",
      snapshot: probing(kubelet.PROBE_START_ERROR),
      reason: REASONS.Running,
      pinned: true,
      probe: "deleted",
    },
    {
      name: "RunContainerError with imageID: pinned",
      snapshot: probing(kubelet.PROBE_RUN_CONTAINER_ERROR_WITH_IMAGE_ID),
      reason: REASONS.Running,
      pinned: true,
      probe: "deleted",
    },
    {
      name: "CRI-O CreateContainerError: UnsupportedRuntime naming the runtime",
      snapshot: probing(kubelet.PROBE_CREATE_CONTAINER_ERROR, kubelet.NODE_INFO_CRIO),
      reason: REASONS.UnsupportedRuntime,
      message: /node node-1 runs cri-o:\/\/1\.20\.0 \(node\.status\.nodeInfo\.containerRuntimeVersion\)/,
      pinned: false,
      probe: "kept",
    },
    {
      name: "CRI-O RunContainerError without imageID: UnsupportedRuntime",
      snapshot: probing(kubelet.PROBE_RUN_CONTAINER_ERROR, kubelet.NODE_INFO_CRIO),
      reason: REASONS.UnsupportedRuntime,
      pinned: false,
      probe: "kept",
    },
    {
      name: "containerd CreateContainerError: ProbeFailed, the kubelet retries",
      snapshot: probing(kubelet.PROBE_CREATE_CONTAINER_ERROR),
      reason: REASONS.ProbeFailed,
      message: /containerd:\/\/1\.6\.20/,
      pinned: false,
      probe: "kept",
    },
    {
      name: "CreateContainerConfigError: ProbeFailed",
      snapshot: probing(kubelet.PROBE_CREATE_CONTAINER_CONFIG_ERROR),
      reason: REASONS.ProbeFailed,
      message: /cannot configure/,
      pinned: false,
      probe: "kept",
    },
    {
      name: "ErrImagePull: ProbeFailed, kept (the kubelet retries the pull)",
      snapshot: probing(kubelet.PROBE_ERR_IMAGE_PULL),
      reason: REASONS.ProbeFailed,
      message: /cannot pull .*ErrImagePull/,
      pinned: false,
      probe: "kept",
    },
    {
      name: "ImagePullBackOff: ProbeFailed",
      snapshot: probing(kubelet.PROBE_IMAGE_PULL_BACK_OFF),
      reason: REASONS.ProbeFailed,
      pinned: false,
      probe: "kept",
    },
    {
      name: "a configuration ID: NoDigest, the probe kept (a new one would say the same)",
      snapshot: probing(kubelet.PROBE_START_ERROR_CONFIG_ID),
      reason: REASONS.NoDigest,
      pinned: false,
      probe: "kept",
    },
    {
      name: "OutOfcpu, refused just now: ProbeFailed, kept until the retry",
      snapshot: probing(kubelet.PROBE_REJECTED_OUT_OF_CPU, kubelet.NODE_INFO_CONTAINERD, 595),
      reason: REASONS.ProbeFailed,
      message: /OutOfcpu.*a new probe in 25 s/,
      pinned: false,
      probe: "kept",
      requeueAfterMs: 25_500,
    },
    {
      name: "OutOfcpu, refused long ago: ProbeFailed, replaced",
      snapshot: probing(kubelet.PROBE_REJECTED_OUT_OF_CPU),
      reason: REASONS.ProbeFailed,
      message: /creating a new probe/,
      pinned: false,
      probe: "deleted",
      requeueAfterMs: 1000,
    },
    {
      name: "NodeAffinity: ProbeFailed, replaced",
      snapshot: probing(kubelet.PROBE_REJECTED_NODE_AFFINITY),
      reason: REASONS.ProbeFailed,
      message: /NodeAffinity: Pod Predicate NodeAffinity failed/,
      pinned: false,
      probe: "deleted",
    },
    {
      name: "evicted while pulling: ProbeFailed, replaced",
      snapshot: probing(kubelet.PROBE_EVICTED_WHILE_PULLING),
      reason: REASONS.ProbeFailed,
      message: /Evicted/,
      pinned: false,
      probe: "deleted",
    },
  ];
  for (const c of cases) {
    const p = plan(c.snapshot, NOW);
    t.equal(reasonOf(p), c.reason, `${c.name}: reason`);
    if (c.message !== undefined) t.match(p.condition.message, c.message, `${c.name}: message`);
    t.same(
      p.pins.map((x) => x.image),
      c.pinned ? [PINNED] : [],
      `${c.name}: pins`,
    );
    t.equal(p.deleteProbes.length, c.probe === "deleted" ? 1 : 0, `${c.name}: probe ${c.probe}`);
    t.same(p.createProbes, [], `${c.name}: no second probe while the name is taken`);
    if (c.requeueAfterMs !== undefined) t.equal(p.requeueAfterMs, c.requeueAfterMs, `${c.name}: requeue`);
    t.notMatch(p.condition.message, /pulling for/, `${c.name}: never a false "pulling for"`);
  }
});

t.test("a probe that reported nothing for longer than the budget: ProbeFailed saying so", async (t) => {
  const s = { ...probing(kubelet.PROBE_CONTAINER_CREATING), probeTimeoutSeconds: 60 };
  const p = plan(s, NOW);
  t.equal(reasonOf(p), REASONS.ProbeFailed);
  t.match(p.condition.message, /has not reported an image yet \(ContainerCreating\) after 595 s \(more than 60 s\)/);
  const young = plan({ ...s, probeTimeoutSeconds: 900 }, NOW);
  t.equal(reasonOf(young), REASONS.Probing);
  t.equal(young.requeueAfterMs, SAFETY_REQUEUE_MS, "the budget ends after the safety requeue");
  t.equal(plan({ ...s, probeTimeoutSeconds: 600 }, NOW).requeueAfterMs, 5500, "looked at again when the budget ends");
});

t.test("a probe serves only the pods created before it", async (t) => {
  const old = appPod("web-a", { created: 0 });
  const late = appPod("web-b", { created: 9 });
  const probe = probeFor(old, 5, kubelet.PROBE_START_ERROR);
  const p = plan(snapshot({ pods: [old, late, probe] }), NOW);
  t.same(
    p.pins.map((x) => x.name),
    ["web-a"],
    "the later pod is not pinned from it",
  );
  t.same(
    p.deleteProbes.map((x) => x.name),
    [probe.metadata.name],
    "served: deleted, a fresh probe follows",
  );
  t.equal(reasonOf(p), REASONS.Probing, "the newest pod decides, and it is still unresolved");
});

t.test("pins", async (t) => {
  const pod = appPod("web-a", {
    status: { ...kubelet.RUNNING_PINNED, initContainerStatuses: kubelet.GATED_BEFORE_PIN.initContainerStatuses! },
  });
  const fromStatus = plan(snapshot({ pods: [pod] }), NOW);
  t.same(
    fromStatus.pins,
    [{ name: "web-a", uid: "uid-web-a", container: "app", image: PINNED, expect: "pinned" }],
    "gated again after it ran: pinned to what it ran",
  );

  const written = plan(
    snapshot({ pods: [appPod("web-a")], pins: new Map([["uid-web-a", { container: "app", image: PINNED }]]) }),
    NOW,
  );
  t.same(written.pins, [], "a pin the cache does not show yet is not written again");
  t.same(written.createProbes, [], "nor is the pod probed again");
  t.equal(written.condition.currentDigest, IMAGE.digest, "its digest is the pinned one");

  const shown = plan(
    snapshot({
      pods: [appPod("web-a", { image: PINNED })],
      pins: new Map([["uid-web-a", { container: "app", image: PINNED }]]),
    }),
    NOW,
  );
  t.same(shown.forgetPins, ["uid-web-a"], "the cache shows the pin: forgotten");
  t.same(shown.pins, [], "a pod pinned in its spec is not pinned again");
});

t.test("a refused pin: retried every visit, and PinFailed outranks every other reason", async (t) => {
  const refused = new Map([
    ["uid-web-a", { container: "app", image: PINNED, refused: "HTTP 403: image changes are not allowed" }],
  ]);
  const failing = job(IMAGE.digest, "failed");
  const p = plan(snapshot({ pods: [appPod("web-a")], jobs: [failing], pins: refused }), NOW);
  t.equal(reasonOf(p), REASONS.PinFailed, "over Failed");
  t.match(p.condition.message, `the API server refused to pin container app of pod web-a to ${PINNED}: HTTP 403`);
  t.same(
    p.pins.map((x) => [x.image, x.expect]),
    [[PINNED, "refused"]],
  );
  t.same(p.createProbes, [], "the refused pin's digest is known: no new probe");
  const released = appPod("web-a", { waiter: "done" });
  t.same(
    plan(snapshot({ pods: [released], pins: refused }), NOW).forgetPins,
    ["uid-web-a"],
    "no longer gated: forgotten",
  );
});

const pinnedPod = (name: string, digest: string, o: Parameters<typeof appPod>[1] = {}): Pod =>
  appPod(name, { image: `${IMAGE.tag}@${digest}`, ...o });

t.test("the Job decision", async (t) => {
  const cases: { name: string; snapshot: Snapshot; job: Plan["job"]["kind"]; reason: string; stale?: string[] }[] = [
    {
      name: "a new digest: its Job",
      snapshot: snapshot({ pods: [pinnedPod("a", D1)] }),
      job: "create",
      reason: REASONS.Running,
    },
    {
      name: "a migrated digest (rollback): no Job",
      snapshot: snapshot({ migrator: migrator({ status: migrated(D2, D1) }), pods: [pinnedPod("a", D1)] }),
      job: "none",
      reason: REASONS.Succeeded,
    },
    {
      name: "its Job runs: wait",
      snapshot: snapshot({ pods: [pinnedPod("a", D1)], jobs: [job(D1, "active")] }),
      job: "none",
      reason: REASONS.Running,
    },
    {
      name: "another digest's Job runs: wait for it",
      snapshot: snapshot({ pods: [pinnedPod("a", D2)], jobs: [job(D1, "active")] }),
      job: "none",
      reason: REASONS.Running,
    },
    {
      name: "succeeded, not recorded: record first, delete nothing",
      snapshot: snapshot({ pods: [pinnedPod("a", D2)], jobs: [job(D2, "succeeded"), job(D1, "failed")] }),
      job: "record",
      reason: REASONS.Succeeded,
      stale: [],
    },
    {
      name: "failed: Failed, no retry",
      snapshot: snapshot({ pods: [pinnedPod("a", D1)], jobs: [job(D1, "failed")] }),
      job: "none",
      reason: REASONS.Failed,
    },
    {
      name: "failed, new retry value: recreated",
      snapshot: snapshot({
        migrator: migrator({ retry: "2" }),
        pods: [pinnedPod("a", D1)],
        jobs: [job(D1, "failed", { retryHandled: "1" })],
      }),
      job: "create",
      reason: REASONS.Running,
    },
    {
      name: "finished Jobs of other digests: stale once recorded",
      snapshot: snapshot({
        migrator: migrator({ status: migrated(D2, D1) }),
        pods: [pinnedPod("a", D2)],
        jobs: [job(D1, "succeeded"), job(D2, "succeeded")],
      }),
      job: "none",
      reason: REASONS.Succeeded,
      stale: [job(D1, "succeeded").metadata.name!],
    },
  ];
  for (const c of cases) {
    const p = plan(c.snapshot, NOW);
    t.equal(p.job.kind, c.job, `${c.name}: job`);
    t.equal(reasonOf(p), c.reason, `${c.name}: reason`);
    if (c.stale !== undefined)
      t.same(
        p.staleJobs.map((s) => s.name),
        c.stale,
        `${c.name}: stale`,
      );
  }
});

t.test("creating a Job: from the newest pod running the digest, pinned, retry noted", async (t) => {
  const older = pinnedPod("a", D1, { revision: 1, created: 9 });
  const newer = pinnedPod("b", D1, { revision: 2, created: 1 });
  const p = plan(
    snapshot({
      migrator: migrator({ retry: "2" }),
      pods: [older, newer],
      jobs: [job(D1, "failed", { retryHandled: "1" })],
    }),
    NOW,
  );
  if (p.job.kind !== "create") return t.fail(`expected create, got ${p.job.kind}`);
  t.equal(p.job.template, "Deployment/web");
  t.equal(p.job.digest, D1);
  t.same(
    p.job.replaces,
    { name: `web-${D1.slice(7, 17)}`, uid: `uid-web-${D1.slice(7, 17)}` },
    "the failed Job goes first",
  );
  t.equal(p.job.job.metadata.annotations?.["migrations.coderanger.net/retry-handled"], "2");
  t.match(p.job.job, { spec: { template: { spec: { containers: [{ image: `${IMAGE.tag}@${D1}` }] } } } });
  t.equal(p.job.warning, undefined, "the app's own image: no warning");
  t.equal(p.condition.currentDigest, D1);
  t.equal(p.condition.currentImage, `${IMAGE.tag}@${D1}`);
});

t.test("creating a Job with spec.image of another repository by tag: the warning comes with it", async (t) => {
  const p = plan(
    snapshot({ migrator: migrator({ spec: { image: "registry.example/tools:v1" } }), pods: [pinnedPod("a", D1)] }),
    NOW,
  );
  if (p.job.kind !== "create") return t.fail(`expected create, got ${p.job.kind}`);
  t.match(p.job.warning, {
    type: "Warning",
    reason: "MigrationImageNotPinned",
    message: /runs spec.image registry.example\/tools:v1 as written/,
  });
});

t.test("no Job without a template: TemplateNotFound or InvalidSpec", async (t) => {
  const unmatched = plan(
    snapshot({
      migrator: migrator({ spec: { templateSelector: { matchLabels: { role: "tpl" } } } }),
      pods: [pinnedPod("a", D1)],
    }),
    NOW,
  );
  t.equal(unmatched.job.kind, "none");
  t.equal(reasonOf(unmatched), REASONS.TemplateNotFound);
  t.match(unmatched.condition.message, "matches spec.templateSelector");
  const orphan = plan(snapshot({ pods: [pinnedPod("a", D1)], owners: owners([]) }), NOW);
  t.equal(reasonOf(orphan), REASONS.TemplateNotFound);
  t.match(orphan.condition.message, /ReplicaSet shop\/web-1, which was not found/);
  const badImage = plan(
    snapshot({ migrator: migrator({ spec: { image: "Tools/Migrate" } }), pods: [pinnedPod("a", D1)] }),
    NOW,
  );
  t.equal(reasonOf(badImage), REASONS.InvalidSpec);
  t.match(badImage.condition.message, /invalid image reference "Tools\/Migrate"/);
});

t.test("recording a success: the status carries the record; look again at once", async (t) => {
  const p = plan(snapshot({ pods: [pinnedPod("a", D1)], jobs: [job(D1, "succeeded")] }), NOW);
  if (p.job.kind !== "record") return t.fail(`expected record, got ${p.job.kind}`);
  t.same(p.job.record, {
    digest: D1,
    image: `${IMAGE.tag}@${D1}`,
    job: `web-${D1.slice(7, 17)}`,
    completionTime: at(100),
  });
  t.equal(p.status?.lastSuccessfulMigration, D1);
  t.same(
    p.status?.migratedDigests?.map((r) => r.digest),
    [D1],
  );
  t.equal(p.requeueAfterMs, 0);
  t.same(p.staleJobs, []);
});

t.test("status and Events: written only when they change, an Event per new reason", async (t) => {
  const first = plan(snapshot({ pods: [pinnedPod("a", D1)] }), NOW);
  t.ok(first.status, "a first status");
  t.same(first.events, [{ type: "Normal", reason: REASONS.Running, message: first.condition.message }]);
  const again = plan(
    snapshot({ migrator: { ...migrator(), status: first.status! }, pods: [pinnedPod("a", D1)] }),
    new Date(NOW.getTime() + 60_000),
  );
  t.equal(again.status, undefined, "the same status: no write");
  t.same(again.events, [], "no Event");
  t.equal(again.condition.reason, REASONS.Running, "the condition is still known");
  const failed = plan(
    snapshot({
      migrator: { ...migrator(), status: first.status! },
      pods: [pinnedPod("a", D1)],
      jobs: [job(D1, "failed")],
    }),
    NOW,
  );
  t.same(
    failed.events.map((e) => [e.type, e.reason]),
    [["Warning", REASONS.Failed]],
  );
  t.match(failed.status?.conditions, [
    { type: "Ready", status: "False", reason: REASONS.Failed },
    { type: "MigrationsReady" },
  ]);
});
