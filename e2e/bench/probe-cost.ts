// What a probe pod costs on the real node (section probe-cost), side by side with changed ways of it:
// the probe as the reconciler builds it (shared/src/probe.ts buildProbePod), the same pod with
// `hostNetwork: true` (no CNI set-up: no network namespace, veth, bridge or address) or another CPU
// limit, and — where the world runs with EphemeralContainers=true — an ephemeral container in a pod held
// in its init container, as a gated pod is held by its waiter. No reconciler runs: the benchmark creates
// the pods itself (without the Migrator's owner reference) and reads them with the watches and the clock
// of latency.ts; a new push of the tag before each round, the variants interleaved and their order
// rotated round by round.
import {
  API_VERSION,
  KIND,
  PROBE_COMMAND,
  PROBE_CONTAINER,
  buildProbePod,
  probeKeyOf,
} from "@digest-migrations/shared";
import type { Container, Migrator, Pod } from "@digest-migrations/shared";
import type { OwnedNodeEnv } from "../world/namespace.ts";
import { waitFor } from "../kit/wait.ts";
import { APP_SPEC, inBenchNamespace, noPodsLeft, seen } from "./latency.ts";
import type { Sightings } from "./latency.ts";
import { summarize } from "./stats.ts";
import { millis } from "./table.ts";
import type { Table } from "./table.ts";

/** The probe pod as the reconciler builds it, and changed ways of it, measured side by side. */
export const VARIANTS: Record<string, (probe: Pod) => void> = {
  "as built": () => {},
  hostNetwork: (probe) => {
    probe.spec.hostNetwork = true;
  },
  "CPU limit 10m (before)": (probe) => cpuLimit(probe, "10m"),
  "CPU limit 50m": (probe) => cpuLimit(probe, "50m"),
};

function cpuLimit(probe: Pod, cpu: string): void {
  for (const c of probe.spec.containers) {
    const resources = (c.resources ?? {}) as { limits?: Record<string, string> };
    c.resources = { ...resources, limits: { ...resources.limits, cpu } };
  }
}

/** The column of the ephemeral-container way (needs EphemeralContainers on the API server and kubelet). */
export const EPHEMERAL = "ephemeral container in the pod";
export const EPHEMERAL_GATE = "EphemeralContainers=true";

export async function probeCostBench(options: { rounds: number; log: (line: string) => void }): Promise<Table[]> {
  return inBenchNamespace("bench-probe", options.log, async (env, sightings) => {
    const ephemeral = (env.world.featureGates ?? "").split(",").includes(EPHEMERAL_GATE);
    if (!ephemeral) options.log(`probe-cost: the world runs without ${EPHEMERAL_GATE}: no ephemeral-container column`);
    const names = [...Object.keys(VARIANTS), ...(ephemeral ? [EPHEMERAL] : [])];
    const uids: Record<string, string[]> = Object.fromEntries(names.map((n) => [n, []]));
    const migrator: Migrator = {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name: "cost", namespace: env.namespace },
      spec: { selector: {} },
    };
    // The gated pod's own waiter stand-in for the ephemeral way: an image already on the node (by digest).
    const holder = ephemeral ? await env.images.push("hold", "1", APP_SPEC) : undefined;
    for (let i = 0; i <= options.rounds; i++) {
      if (i % 5 === 0) options.log(`probe-cost: round ${i}/${options.rounds}${i === 0 ? " (warm-up)" : ""}`);
      await env.images.push("app", "latest", APP_SPEC);
      // Rotated round by round, so no variant always goes first after the push.
      const order = names.map((_, k) => names[(k + i) % names.length] ?? "");
      for (const variant of order) {
        await noPodsLeft(env);
        const app = { name: "app", image: env.images.ref("app", "latest"), imagePullPolicy: "Always" };
        const name = `probe-${i}-${names.indexOf(variant)}`;
        const uid =
          variant === EPHEMERAL
            ? await ephemeralProbe(
                env,
                sightings,
                name,
                app,
                `${env.images.repository("hold")}@${holder?.digest ?? ""}`,
              )
            : await probePod(
                env,
                sightings,
                name,
                VARIANTS[variant],
                buildProbePod(migrator, probeKeyOf(gated(env, app), app)),
              );
        await env.kube.delete(`/api/v1/namespaces/${env.namespace}/pods/${name}`, { gracePeriodSeconds: 0 });
        if (i > 0) uids[variant]?.push(uid);
      }
    }
    return [probeCostTable(uids, sightings)];
  });
}

function gated(env: OwnedNodeEnv, app: Container): Pod {
  return { apiVersion: "v1", kind: "Pod", metadata: {}, spec: { nodeName: env.nodeName, containers: [app] } };
}

/** The reconciler's probe pod, changed by `variant`: created, until its imageID shows. */
async function probePod(
  env: OwnedNodeEnv,
  sightings: Sightings,
  name: string,
  variant: ((probe: Pod) => void) | undefined,
  probe: Pod,
): Promise<string> {
  probe.metadata.name = name;
  delete probe.metadata.ownerReferences;
  variant?.(probe);
  const created = await env.kube.create<Pod>(`/api/v1/namespaces/${env.namespace}/pods`, probe);
  const uid = created.metadata.uid ?? "";
  await waitFor(() => sightings.has(seen.pod(uid, "imageID")), {
    what: `probe ${name} to report its imageID`,
    timeoutMs: 120_000,
    intervalMs: 20,
  });
  return uid;
}

/**
 * The other way: a pod held in its init container, as a gated pod is, gets an ephemeral container
 * with the gated container's image and pull policy and the probe's command. The pod's sandbox, node,
 * pull secrets and service account are its own, so nothing is created but the container. Timed from
 * the watch seeing the ephemeral container in the spec to its imageID.
 */
async function ephemeralProbe(
  env: OwnedNodeEnv,
  sightings: Sightings,
  name: string,
  app: Container,
  holderImage: string,
): Promise<string> {
  const pods = `/api/v1/namespaces/${env.namespace}/pods`;
  const created = await env.kube.create<Pod>(pods, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name },
    spec: {
      nodeName: env.nodeName,
      terminationGracePeriodSeconds: 0,
      initContainers: [{ name: "hold", image: holderImage, command: ["serve"] }],
      containers: [app],
    },
  });
  const uid = created.metadata.uid ?? "";
  await waitFor(() => sightings.has(seen.pod(uid, "initRunning")), {
    what: `pod ${name} to run its init container`,
    timeoutMs: 120_000,
    intervalMs: 20,
  });
  // Kubernetes 1.16–1.21: the subresource takes an EphemeralContainers object (1.22+: the Pod).
  await env.kube.strategicPatch(`${pods}/${name}/ephemeralcontainers`, {
    ephemeralContainers: [
      {
        name: PROBE_CONTAINER,
        image: app.image,
        imagePullPolicy: app.imagePullPolicy,
        command: [PROBE_COMMAND],
        terminationMessagePolicy: "File",
        // 1.20 refuses a securityContext on an ephemeral container: it runs under the pod's.
      },
    ],
  });
  await waitFor(() => sightings.has(seen.pod(uid, "ephemeralImageID")), {
    what: `the ephemeral container of ${name} to report its imageID`,
    timeoutMs: 120_000,
    intervalMs: 20,
  });
  return uid;
}

export function probeCostTable(uids: Record<string, readonly string[]>, s: Sightings): Table {
  const at = (key: string): number => s.get(key) ?? Number.NaN;
  // A probe pod starts when it is created and answers in its container status; the ephemeral way
  // starts when the container shows in the pod's spec and answers in its ephemeral container status.
  const marks = (variant: string): { start: "created" | "ephemeral"; answer: "imageID" | "ephemeralImageID" } =>
    variant === EPHEMERAL
      ? { start: "ephemeral", answer: "ephemeralImageID" }
      : { start: "created", answer: "imageID" };
  const steps: [string, (uid: string, m: ReturnType<typeof marks>) => number][] = [
    ["start → Pulling (sandbox)", (u, m) => at(seen.event(u, "probe", "Pulling")) - at(seen.pod(u, m.start))],
    ["Pulling → Pulled", (u) => at(seen.event(u, "probe", "Pulled")) - at(seen.event(u, "probe", "Pulling"))],
    ["Pulled → imageID seen", (u, m) => at(seen.pod(u, m.answer)) - at(seen.event(u, "probe", "Pulled"))],
    ["start → imageID seen", (u, m) => at(seen.pod(u, m.answer)) - at(seen.pod(u, m.start))],
  ];
  const names = Object.keys(uids);
  const cell = (variant: string, of: (typeof steps)[number][1]): string => {
    const sum = summarize((uids[variant] ?? []).map((u) => of(u, marks(variant))).filter(Number.isFinite));
    return `${millis(sum.median)} / ${millis(sum.p95)}`;
  };
  const notes = [
    "the reconciler's probe pod (restricted security context, a command the image lacks: StartError after the pull), created by the benchmark; one new push of app:latest per round, the variants interleaved, their order rotated round by round.",
    "as built: buildProbePod (requests cpu 1m / memory 4Mi, limits cpu 100m / memory 16Mi, the pod network); each other column changes one thing of it. The container runtime's own set-up (runc init, the pause container) runs inside the pod's CPU limit.",
    "start: the probe pod created; Pulling / Pulled: the kubelet's Events; imageID: the pod's container status; all seen by the benchmark's watches on one clock.",
  ];
  if (names.includes(EPHEMERAL)) {
    notes.push(
      `${EPHEMERAL}: a pod held in its init container (as a gated pod is) gets an ephemeral container with the same image, pull policy and command (1.20 refuses a security context of its own: it runs under the pod's; the pods/ephemeralcontainers subresource, alpha in 1.20 behind the EphemeralContainers gate, on in this world's API server and kubelet); start: the watch sees it in the pod's spec; no sandbox is made, the pod's is used. Not what the reconciler does today.`,
    );
  }
  return {
    title: `Probe pod on the real node, side by side (${uids[names[0] ?? ""]?.length ?? 0} rounds)`,
    columns: ["step", ...names.map((v) => `${v}: p50 / p95`)],
    rows: steps.map(([label, of]) => [label, ...names.map((v) => cell(v, of))]),
    notes,
  };
}
