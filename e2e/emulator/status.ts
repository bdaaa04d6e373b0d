// Pod status as the kubelet writes it, computed from the emulator's view of each container:
// phase (kubelet getPhase), the four standard conditions, and container statuses in spec order.
import type { ContainerStatus, PodCondition, PodStatus } from "@digest-migrations/shared";

export type Phase = "Pending" | "Running" | "Succeeded" | "Failed";

/**
 * The kubelet's pod phase (pkg/kubelet/kubelet_pods.go getPhase, 1.20) from init and app
 * container statuses. A container waiting after a termination (`lastState.terminated`, i.e. in
 * restart backoff) counts as stopped, not as waiting.
 */
export function podPhase(restartPolicy: string | undefined, init: ContainerStatus[], app: ContainerStatus[]): Phase {
  const policy = restartPolicy ?? "Always";
  let pendingInit = 0;
  let failedInit = 0;
  for (const s of init) {
    if (s.state?.running) continue;
    if (s.state?.terminated) {
      if (s.state.terminated.exitCode !== 0) failedInit++;
    } else if (s.lastState?.terminated && s.lastState.terminated.exitCode !== 0) {
      failedInit++;
    } else {
      pendingInit++;
    }
  }
  let running = 0;
  let waiting = 0;
  let stopped = 0;
  let succeeded = 0;
  for (const s of app) {
    if (s.state?.running) running++;
    else if (s.state?.terminated) {
      stopped++;
      if (s.state.terminated.exitCode === 0) succeeded++;
    } else if (s.lastState?.terminated) stopped++;
    else waiting++;
  }
  if (failedInit > 0 && policy === "Never") return "Failed";
  if (pendingInit > 0 || failedInit > 0 || waiting > 0) return "Pending";
  if (running > 0) return "Running";
  if (stopped > 0) {
    if (policy === "Always") return "Running";
    if (stopped === succeeded) return "Succeeded";
    if (policy === "Never") return "Failed";
    return "Running";
  }
  return "Pending";
}

export interface StatusInput {
  phase: Phase;
  init: ContainerStatus[];
  app: ContainerStatus[];
  previous: PodStatus | undefined;
  now: string;
  startTime: string;
  hostIP: string;
  podIP: string;
}

/** The full pod status (written with a JSON merge patch, so lists replace wholesale). */
export function buildPodStatus(input: StatusInput): PodStatus {
  const { init, app, phase } = input;
  const notInitialized = init
    .filter((s) => !(s.state?.terminated && s.state.terminated.exitCode === 0))
    .map((s) => s.name);
  const notReady = app.filter((s) => !s.ready).map((s) => s.name);
  const completed = phase === "Succeeded" || phase === "Failed";
  const initialized: Omit<PodCondition, "lastTransitionTime"> =
    notInitialized.length === 0 || (completed && init.every((s) => s.state?.terminated))
      ? { type: "Initialized", status: "True", ...(completed ? { reason: "PodCompleted" } : {}) }
      : {
          type: "Initialized",
          status: "False",
          reason: "ContainersNotInitialized",
          message: `containers with incomplete status: [${notInitialized.join(" ")}]`,
        };
  const ready: Omit<PodCondition, "lastTransitionTime" | "type"> =
    notReady.length === 0 && !completed
      ? { status: "True" }
      : completed
        ? { status: "False", reason: "PodCompleted" }
        : {
            status: "False",
            reason: "ContainersNotReady",
            message: `containers with unready status: [${notReady.join(" ")}]`,
          };
  const conditions = [
    initialized,
    { type: "Ready", ...ready },
    { type: "ContainersReady", ...ready },
    { type: "PodScheduled", status: "True" },
  ].map((c) => withTransitionTime(c, input.previous?.conditions, input.now));
  return {
    phase,
    conditions,
    hostIP: input.hostIP,
    podIP: input.podIP,
    podIPs: [{ ip: input.podIP }],
    startTime: input.startTime,
    ...(init.length > 0 ? { initContainerStatuses: init } : {}),
    containerStatuses: app,
    qosClass: input.previous?.qosClass ?? "BestEffort",
  };
}

function withTransitionTime(
  condition: Omit<PodCondition, "lastTransitionTime">,
  previous: PodCondition[] | undefined,
  now: string,
): PodCondition {
  const old = previous?.find((c) => c.type === condition.type);
  const lastTransitionTime =
    old && old.status === condition.status && old.lastTransitionTime ? old.lastTransitionTime : now;
  return { ...condition, lastProbeTime: null, lastTransitionTime };
}
