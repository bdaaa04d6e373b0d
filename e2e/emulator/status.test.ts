import t from "tap";
import type { ContainerStatus } from "@digest-migrations/shared";
import { buildPodStatus, podPhase } from "./status.ts";

const waiting = (name: string, reason = "PodInitializing"): ContainerStatus => ({
  name,
  image: "app",
  imageID: "",
  ready: false,
  state: { waiting: { reason } },
});
const running = (name: string): ContainerStatus => ({
  name,
  image: "app",
  imageID: "x",
  ready: true,
  state: { running: { startedAt: "t" } },
});
const exited = (name: string, exitCode: number): ContainerStatus => ({
  name,
  image: "app",
  imageID: "x",
  ready: false,
  state: { terminated: { exitCode } },
});
const backoff = (name: string, exitCode: number): ContainerStatus => ({
  ...waiting(name, "CrashLoopBackOff"),
  lastState: { terminated: { exitCode } },
});

t.test("podPhase follows the kubelet's getPhase", async (t) => {
  const cases: [string, string, ContainerStatus[], ContainerStatus[], string][] = [
    ["init pending", "Always", [waiting("i")], [waiting("a")], "Pending"],
    ["init running", "Always", [running("i")], [waiting("a")], "Pending"],
    ["init failed, Never", "Never", [exited("i", 1)], [waiting("a")], "Failed"],
    ["init failed, Always (restarting)", "Always", [backoff("i", 1)], [waiting("a")], "Pending"],
    ["app running", "Always", [exited("i", 0)], [running("a")], "Running"],
    ["app waiting", "Always", [exited("i", 0)], [waiting("a", "ContainerCreating")], "Pending"],
    ["job success", "Never", [], [exited("a", 0)], "Succeeded"],
    ["job failure", "Never", [], [exited("a", 2)], "Failed"],
    ["start error, Never", "Never", [], [exited("a", 128)], "Failed"],
    ["OnFailure success", "OnFailure", [], [exited("a", 0)], "Succeeded"],
    ["OnFailure restarting", "OnFailure", [], [backoff("a", 1)], "Running"],
    ["Always restarting", "Always", [], [backoff("a", 0)], "Running"],
    ["one of two done, other running", "Never", [], [exited("a", 0), running("b")], "Running"],
  ];
  for (const [what, policy, init, app, phase] of cases) t.equal(podPhase(policy, init, app), phase, what);
});

t.test("conditions and lastTransitionTime", async (t) => {
  const base = { startTime: "s", hostIP: "127.0.0.1", podIP: "127.0.0.2" };
  const pending = buildPodStatus({
    ...base,
    phase: "Pending",
    init: [running("i")],
    app: [waiting("a")],
    previous: undefined,
    now: "t1",
  });
  const cond = (s: typeof pending, type: string) => s.conditions?.find((c) => c.type === type);
  t.equal(cond(pending, "Initialized")?.status, "False");
  t.match(cond(pending, "Initialized")?.message, "[i]");
  t.equal(cond(pending, "Ready")?.reason, "ContainersNotReady");
  t.equal(cond(pending, "PodScheduled")?.status, "True");
  t.ok(pending.initContainerStatuses);

  const up = buildPodStatus({
    ...base,
    phase: "Running",
    init: [exited("i", 0)],
    app: [running("a")],
    previous: pending,
    now: "t2",
  });
  t.equal(cond(up, "Ready")?.status, "True");
  t.equal(cond(up, "Ready")?.lastTransitionTime, "t2", "changed status gets a new transition time");
  t.equal(cond(up, "PodScheduled")?.lastTransitionTime, "t1", "unchanged status keeps its transition time");

  const done = buildPodStatus({
    ...base,
    phase: "Succeeded",
    init: [],
    app: [exited("a", 0)],
    previous: up,
    now: "t3",
  });
  t.equal(cond(done, "Ready")?.reason, "PodCompleted");
  t.equal(done.initContainerStatuses, undefined);
  t.same(done.podIPs, [{ ip: "127.0.0.2" }]);
});
