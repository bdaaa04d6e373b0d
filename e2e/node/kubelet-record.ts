// What the real kubelet (1.20.2, containerd 1.6, runc) writes in pod status in the situations the
// digest protocol depends on, recorded on the real node. The recordings are committed as fixtures
// (shared/src/testdata/kubelet-1.20/*.json) for the decision tests in shared/ and for the node
// emulator that the scale benchmark uses, so neither claims a kubelet behaviour nobody saw; a test
// records them again on every run and checks the committed ones still say the same.
//
//   node e2e/node/kubelet-record.ts     # inside a world (e2e/world/run.ts): rewrite the fixtures
import fs from "node:fs";
import path from "node:path";
import { PROBE_COMMAND } from "@digest-migrations/shared";
import type { Pod } from "@digest-migrations/shared";
import type { KubeClient } from "../kit/client.ts";
import { waitFor } from "../kit/wait.ts";
import { repoRoot } from "./images.ts";

export const FIXTURE_DIR = path.join(repoRoot, "shared/src/testdata/kubelet-1.20");

/** A recorded situation: what was asked of the kubelet, and the status it wrote. */
export interface KubeletRecording {
  situation: string;
  /** the image (by tag) the recording ran, and the digest its tag pointed at */
  image: string;
  digest: string;
  /** the pod as created (spec only: names and images are this recording's) */
  spec: Pod["spec"];
  status: NonNullable<Pod["status"]>;
}

export interface RecordContext {
  kube: KubeClient;
  namespace: string;
  nodeName: string;
  /** an image that exists in the registry, by tag */
  image: string;
  /** its digest */
  digest: string;
  /** a tag the registry does not have */
  missingImage: string;
  /** an image on a registry address nothing listens on */
  unreachableImage: string;
}

function pod(name: string, spec: Partial<Pod["spec"]>): Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name },
    spec: { restartPolicy: "Never", terminationGracePeriodSeconds: 0, containers: [], ...spec },
  };
}

async function create(ctx: RecordContext, p: Pod): Promise<void> {
  await ctx.kube.create(`/api/v1/namespaces/${ctx.namespace}/pods`, p);
}

async function until(ctx: RecordContext, name: string, what: string, cond: (p: Pod) => boolean): Promise<Pod> {
  return waitFor(
    async () => {
      const p = await ctx.kube.get<Pod>(`/api/v1/namespaces/${ctx.namespace}/pods/${name}`);
      return cond(p) ? p : undefined;
    },
    {
      what: `pod ${name}: ${what}`,
      timeoutMs: 120_000,
      intervalMs: 100,
      describe: async () =>
        JSON.stringify((await ctx.kube.get<Pod>(`/api/v1/namespaces/${ctx.namespace}/pods/${name}`)).status),
    },
  );
}

const container = (p: Pod, name: string) => p.status?.containerStatuses?.find((c) => c.name === name);
const init = (p: Pod, name: string) => p.status?.initContainerStatuses?.find((c) => c.name === name);

/** Records every situation; returns them by file name. */
export async function recordKubelet(ctx: RecordContext): Promise<Record<string, KubeletRecording>> {
  const out: Record<string, KubeletRecording> = {};
  const keep = (file: string, situation: string, p: Pod): void => {
    out[file] = { situation, image: ctx.image, digest: ctx.digest, spec: p.spec, status: p.status ?? {} };
  };

  // A probe as the reconciler makes it: its command cannot exist, restartPolicy Never, pull Always.
  await create(
    ctx,
    pod("probe", {
      containers: [{ name: "probe", image: ctx.image, imagePullPolicy: "Always", command: [PROBE_COMMAND] }],
    }),
  );
  keep(
    "probe-start-error.json",
    "a probe pod (command that does not exist, restartPolicy Never, pull Always), final status",
    await until(ctx, "probe", "phase Failed", (p) => p.status?.phase === "Failed"),
  );

  // A gated pod: its waiter (init container) runs until a file appears; the app container waits.
  const sleeper = ["node", "-e", "setTimeout(() => {}, 600000)"];
  await create(
    ctx,
    pod("gated", {
      restartPolicy: "Always",
      initContainers: [{ name: "migrate-wait-db", image: ctx.image, command: sleeper }],
      containers: [{ name: "app", image: ctx.image, command: sleeper }],
    }),
  );
  keep(
    "gated-waiting.json",
    "a gated pod while its waiter init container runs (the app container's image by tag)",
    await until(ctx, "gated", "the waiter running", (p) => Boolean(init(p, "migrate-wait-db")?.state?.running)),
  );
  const pinned = `${ctx.image}@${ctx.digest}`;
  await ctx.kube.request("PATCH", `/api/v1/namespaces/${ctx.namespace}/pods/gated`, {
    body: { spec: { containers: [{ name: "app", image: pinned }] } },
    contentType: "application/strategic-merge-patch+json",
  });
  keep(
    "gated-pinned.json",
    "the same pod after its app container's image was patched to name:tag@digest, once the kubelet's status shows it",
    await until(ctx, "gated", "the kubelet to report the pinned image", (p) => container(p, "app")?.image === pinned),
  );

  // Released: the waiter exits 0 and the app container starts from the pinned image.
  await create(
    ctx,
    pod("released", {
      restartPolicy: "Always",
      initContainers: [{ name: "migrate-wait-db", image: ctx.image, command: ["node", "-e", "0"] }],
      containers: [{ name: "app", image: pinned, command: sleeper }],
    }),
  );
  keep(
    "released-running.json",
    "a pod whose waiter exited 0, its app container running from name:tag@digest",
    await until(ctx, "released", "the app running", (p) => Boolean(container(p, "app")?.state?.running)),
  );

  // Probes whose image cannot be pulled: a tag the registry does not have, a registry nobody answers on.
  const probeOf = (image: string): Partial<Pod["spec"]> => ({
    containers: [{ name: "probe", image, imagePullPolicy: "Always", command: [PROBE_COMMAND] }],
  });
  await create(ctx, pod("missing", probeOf(ctx.missingImage)));
  keep(
    "pull-missing-image.json",
    "a probe of an image tag the registry does not have: the pull failed (waiting, no imageID)",
    await until(
      ctx,
      "missing",
      "ErrImagePull",
      (p) => container(p, "probe")?.state?.waiting?.reason === "ErrImagePull",
    ),
  );
  keep(
    "pull-missing-image-backoff.json",
    "the same probe a moment later: backing off between pulls (waiting, no imageID)",
    await until(
      ctx,
      "missing",
      "ImagePullBackOff",
      (p) => container(p, "probe")?.state?.waiting?.reason === "ImagePullBackOff",
    ),
  );
  await create(ctx, pod("unreachable", probeOf(ctx.unreachableImage)));
  keep(
    "pull-unreachable-registry.json",
    "a probe of an image on a registry address nothing listens on: the pull failed (waiting, no imageID)",
    await until(
      ctx,
      "unreachable",
      "ErrImagePull",
      (p) => container(p, "probe")?.state?.waiting?.reason === "ErrImagePull",
    ),
  );

  // The kubelet refusing a pod bound to it (nodeName set, bypassing the scheduler).
  await create(
    ctx,
    pod("refused", {
      nodeName: ctx.nodeName,
      nodeSelector: { "digest-migrations.example/no-such-label": "x" },
      containers: [{ name: "probe", image: ctx.image, command: [PROBE_COMMAND] }],
    }),
  );
  keep(
    "admission-node-affinity.json",
    "a pod bound to the node (nodeName) whose nodeSelector the node does not match: refused by the kubelet",
    await until(ctx, "refused", "phase Failed", (p) => p.status?.phase === "Failed"),
  );

  // A crash-looping probe (restartPolicy OnFailure).
  await create(
    ctx,
    pod("crashloop", {
      restartPolicy: "OnFailure",
      containers: [{ name: "probe", image: ctx.image, command: [PROBE_COMMAND] }],
    }),
  );
  keep(
    "probe-on-failure-crashloop.json",
    "a probe pod with restartPolicy OnFailure: restarted, then backed off",
    await until(
      ctx,
      "crashloop",
      "CrashLoopBackOff",
      (p) => container(p, "probe")?.state?.waiting?.reason === "CrashLoopBackOff",
    ),
  );
  return out;
}

/** Writes the recordings as the committed fixtures. */
export function writeFixtures(recordings: Record<string, KubeletRecording>): void {
  fs.mkdirSync(FIXTURE_DIR, { recursive: true });
  for (const [file, rec] of Object.entries(recordings)) {
    fs.writeFileSync(path.join(FIXTURE_DIR, file), `${JSON.stringify(rec, null, 2)}\n`);
  }
}

/** The committed fixtures, by file name. */
export function readFixtures(): Record<string, KubeletRecording> {
  const out: Record<string, KubeletRecording> = {};
  for (const f of fs.readdirSync(FIXTURE_DIR).filter((n) => n.endsWith(".json"))) {
    out[f] = JSON.parse(fs.readFileSync(path.join(FIXTURE_DIR, f), "utf8")) as KubeletRecording;
  }
  return out;
}

/** What a recording says, without this run's names, addresses and times: the shape tests rely on. */
export function summarize(rec: KubeletRecording): unknown {
  const statuses = (list: NonNullable<Pod["status"]>["containerStatuses"]): unknown[] =>
    (list ?? []).map((c) => {
      const entry: [string, unknown] = Object.entries(c.state ?? {})[0] ?? ["none", {}];
      const kind = entry[0];
      const d = (entry[1] ?? {}) as { reason?: string; exitCode?: number };
      return {
        name: c.name,
        state: kind,
        reason: d.reason ?? null,
        exitCode: d.exitCode ?? null,
        image: c.image.includes("@sha256:")
          ? "name:tag@digest"
          : c.image.startsWith("sha256:")
            ? "config id"
            : "name:tag",
        imageID: c.imageID === "" ? "" : /^[^@]+@sha256:[0-9a-f]{64}$/.test(c.imageID) ? "repository@digest" : "other",
        restarted: (c.restartCount ?? 0) > 0,
      };
    });
  return {
    phase: rec.status.phase ?? null,
    reason: rec.status.reason ?? null,
    initContainers: statuses(rec.status.initContainerStatuses),
    containers: statuses(rec.status.containerStatuses),
  };
}

if (import.meta.main) {
  // Recording needs a world: run as `node e2e/world/run.ts node e2e/node/kubelet-record.ts`
  // (or with a kept world).
  const { world } = await import("../world/connect.ts");
  const { AppImages } = await import("../world/app-images.ts");
  const cleanups: (() => Promise<void>)[] = [];
  const w = await world((fn) => cleanups.push(fn));
  const namespace = `kubelet-record-${Date.now()}`;
  await w.cluster.ensureNamespace(namespace);
  const images = new AppImages({ registry: w.info.node.registry, base: w.info.images.base }, namespace);
  try {
    const { digest } = await images.push("app", "latest", { commands: {} });
    const recordings = await recordKubelet({
      kube: w.kube,
      namespace,
      nodeName: w.info.node.name,
      image: images.ref("app", "latest"),
      digest,
      missingImage: images.ref("app", "never-pushed"),
      unreachableImage: "127.0.0.1:1/app:latest",
    });
    writeFixtures(recordings);
    console.log(`wrote ${Object.keys(recordings).length} recordings to ${FIXTURE_DIR}`);
  } finally {
    images.close();
    await w.kube.delete(`/api/v1/namespaces/${namespace}`);
    for (const fn of cleanups) await fn();
  }
}
