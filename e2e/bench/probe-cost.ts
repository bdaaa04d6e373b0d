// What a probe pod costs on the real node (section probe-cost), side by side with changed ways of it:
// (shared/src/probe.ts buildProbePod) on the pod network, as it is built for a pod on the pod network,
// and the same pod with `hostNetwork: true`, as it is built for a gated pod on the host's network (no
// CNI set-up: no network namespace, veth, bridge or address). No reconciler runs: the benchmark
// creates the probe pods itself (without the Migrator's owner reference) and reads them with the
// watches and the clock of latency.ts; a new push of the tag before each round, the two variants
// interleaved and their order alternated round by round.
import { API_VERSION, KIND, buildProbePod, probeKeyOf } from "@digest-migrations/shared";
import type { Migrator, Pod } from "@digest-migrations/shared";
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

export async function probeCostBench(options: { rounds: number; log: (line: string) => void }): Promise<Table[]> {
  return inBenchNamespace("bench-probe", options.log, async (env, sightings) => {
    const names = Object.keys(VARIANTS);
    const uids: Record<string, string[]> = Object.fromEntries(names.map((n) => [n, []]));
    const migrator: Migrator = {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name: "cost", namespace: env.namespace },
      spec: { selector: {} },
    };
    for (let i = 0; i <= options.rounds; i++) {
      if (i % 5 === 0) options.log(`probe-cost: round ${i}/${options.rounds}${i === 0 ? " (warm-up)" : ""}`);
      await env.images.push("app", "latest", APP_SPEC);
      // Rotated round by round, so no variant always goes first after the push.
      const order = names.map((_, k) => names[(k + i) % names.length] ?? "");
      for (const variant of order) {
        await noPodsLeft(env);
        const app = { name: "app", image: env.images.ref("app", "latest"), imagePullPolicy: "Always" };
        const gated: Pod = {
          apiVersion: "v1",
          kind: "Pod",
          metadata: {},
          spec: { nodeName: env.nodeName, containers: [app] },
        };
        const probe = buildProbePod(migrator, probeKeyOf(gated, app));
        probe.metadata.name = `probe-${i}-${names.indexOf(variant)}`;
        delete probe.metadata.ownerReferences;
        VARIANTS[variant]?.(probe);
        const created = await env.kube.create<Pod>(`/api/v1/namespaces/${env.namespace}/pods`, probe);
        const uid = created.metadata.uid ?? "";
        await waitFor(() => sightings.has(seen.pod(uid, "imageID")), {
          what: `probe ${probe.metadata.name} to report its imageID`,
          timeoutMs: 120_000,
          intervalMs: 20,
        });
        await env.kube.delete(`/api/v1/namespaces/${env.namespace}/pods/${probe.metadata.name}`, {
          gracePeriodSeconds: 0,
        });
        if (i > 0) uids[variant]?.push(uid);
      }
    }
    return [probeCostTable(uids, sightings)];
  });
}

export function probeCostTable(uids: Record<string, readonly string[]>, s: Sightings): Table {
  const at = (key: string): number => s.get(key) ?? Number.NaN;
  const steps: [string, (uid: string) => number][] = [
    ["created → Pulling (sandbox)", (u) => at(seen.event(u, "probe", "Pulling")) - at(seen.pod(u, "created"))],
    ["Pulling → Pulled", (u) => at(seen.event(u, "probe", "Pulled")) - at(seen.event(u, "probe", "Pulling"))],
    ["Pulled → imageID seen", (u) => at(seen.pod(u, "imageID")) - at(seen.event(u, "probe", "Pulled"))],
    ["created → imageID seen", (u) => at(seen.pod(u, "imageID")) - at(seen.pod(u, "created"))],
  ];
  const names = Object.keys(uids);
  const cell = (variant: string, of: (uid: string) => number): string => {
    const sum = summarize((uids[variant] ?? []).map(of).filter(Number.isFinite));
    return `${millis(sum.median)} / ${millis(sum.p95)}`;
  };
  return {
    title: `Probe pod on the real node, side by side (${uids[names[0] ?? ""]?.length ?? 0} rounds)`,
    columns: ["step", ...names.map((v) => `${v}: p50 / p95`)],
    rows: steps.map(([label, of]) => [label, ...names.map((v) => cell(v, of))]),
    notes: [
      "the reconciler's probe pod (restricted security context, a command the image lacks: StartError after the pull), created by the benchmark; one new push of app:latest per round, the variants interleaved, their order rotated round by round.",
      "as built: buildProbePod (requests cpu 1m / memory 4Mi, limits cpu 100m / memory 16Mi, the pod network); each other column changes one thing of it. The container runtime's own set-up (runc init, the pause container) runs inside the pod's CPU limit.",
      "Pulling / Pulled: the kubelet's Events; imageID: the pod's container status; all seen by the benchmark's watches on one clock.",
    ],
  };
}
