// plan(), steps 1 to 3 (plan-pods.ts): a probe for each gated pod, the probe in every state a kubelet
// leaves it in (statuses from testdata/kubelet-statuses.ts), which pods a probe serves, and pins —
// including those the cache has not caught up with and those the API server refused.
import t from "tap";
import type { PodStatus } from "./k8s.ts";
import { REASONS } from "./migrator.ts";
import { SAFETY_REQUEUE_MS, plan } from "./plan.ts";
import type { Plan, Snapshot } from "./plan.ts";
import { NOW, appPod, job, migrator, node, probeFor, snapshot } from "./plan-builders.ts";
import * as kubelet from "./testdata/kubelet-statuses.ts";

const { IMAGE } = kubelet;
const PINNED = IMAGE.pinned;
const reasonOf = (p: Plan): string => p.condition.reason;

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

t.test("spec.probePullTimeoutSeconds is the Migrator's own pull budget, over the reconciler's", async (t) => {
  const s = { ...probing(kubelet.PROBE_CONTAINER_CREATING), probeTimeoutSeconds: 300 };
  const own = (seconds: number): Snapshot => ({
    ...s,
    migrator: migrator({ spec: { probePullTimeoutSeconds: seconds } }),
  });
  const short = plan(own(60), NOW);
  t.equal(reasonOf(short), REASONS.ProbeFailed, "past its own 60 s, within the reconciler's 300 s");
  t.match(short.condition.message, /after 595 s \(more than 60 s, spec\.probePullTimeoutSeconds\)/);
  const long = plan({ ...own(1200), probeTimeoutSeconds: 60 }, NOW);
  t.equal(reasonOf(long), REASONS.Probing, "within its own 1200 s, past the reconciler's 60 s");
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
