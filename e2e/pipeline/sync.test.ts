// The pipeline driver against the real control plane and the real node, before any reconciler
// runs: the plugin's generate renders the shop inside the plugin image as Argo CD calls it, the
// objects are server-side applied in wave order, and the pods it creates stay gated in their waiter
// (no reconciler answers), so containerd never starts an app container. (Also: the loopback
// "Service" of the fault tests, e2e/pipeline/service.ts.)
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import t from "tap";
import type { KubeObject, Pod, PodTemplateSpec } from "@digest-migrations/shared";
import { API_VERSION, KIND, WAITER_CONTAINER_PREFIX } from "@digest-migrations/shared";
import { waitFor } from "../kit/wait.ts";
import { freePort } from "../kit/ports.ts";
import {
  APP_CONTAINER,
  APP_REPOSITORY,
  APP_TAG,
  DEPLOYMENT,
  MANIFESTS_DIR,
  MIGRATOR,
  checkout,
  databaseSecret,
  pushBuild,
} from "../apps/shop/builds.ts";
import { nodeEnv } from "../world/env.ts";
import { applyChartCrds } from "../world/reconciler-release.ts";
import { FIELD_MANAGER, byWave } from "./apply.ts";
import { restart, RESTARTED_AT } from "./restart.ts";
import { ServiceProxy } from "./service.ts";
import { manifestRequest, sync } from "./sync.ts";
import type { SyncOptions } from "./sync.ts";
import { namedSidecar, repoServer } from "../argocd/sidecar.ts";
import { envMap } from "../argocd/exec.ts";

interface DeploymentView extends KubeObject {
  metadata: KubeObject["metadata"] & { generation?: number; managedFields?: { manager: string; operation: string }[] };
  spec: { template: PodTemplateSpec };
}

const obj = (kind: string, name: string, wave?: string): KubeObject => ({
  apiVersion: "v1",
  kind,
  metadata: { name, ...(wave === undefined ? {} : { annotations: { "argocd.argoproj.io/sync-wave": wave } }) },
});

t.test("waves: ascending, default 0, order kept inside a wave; a bad wave names the object", async (t) => {
  const waves = byWave([obj("A", "a"), obj("B", "b", "-1"), obj("C", "c", "2"), obj("D", "d"), obj("E", "e", "-1")]);
  t.same(
    waves.map((w) => [w.wave, w.objects.map((o) => o.metadata.name)]),
    [
      [-1, ["b", "e"]],
      [0, ["a", "d"]],
      [2, ["c"]],
    ],
  );
  t.throws(() => byWave([obj("ConfigMap", "x", "soon")]), /ConfigMap x: argocd.argoproj.io\/sync-wave "soon"/);
});

t.test("generate runs with the sidecar's environment, Argo CD's variables and the parameters both ways", async (t) => {
  const sidecar = namedSidecar();
  await repoServer(undefined, [sidecar]).generateManifests(
    manifestRequest(MANIFESTS_DIR, {
      namespace: "apps",
      appName: "shop",
      waiterImage: "w:1",
      reconcilerUrl: "http://r:1",
      parameters: { "allow-unmatched-migrators": "true" },
      pluginEnv: { FOO: "bar" },
    }),
  );
  const generate = sidecar.runs.at(-1);
  t.same(generate?.argv.slice(-1), ["generate"], "the generate command of plugin/plugin.yaml ran last");
  const env = envMap(generate?.env ?? []);
  t.equal(env.DIGEST_MIGRATIONS_WAITER_IMAGE, "ghcr.io/digest-migrations/reconciler:0.1.0", "the sidecar's own env");
  t.ok(env.PATH, "the sidecar's PATH");
  t.equal(env.ARGOCD_APP_NAME, "shop");
  t.equal(env.ARGOCD_APP_NAMESPACE, "apps");
  t.equal(env.PARAM_WAITER_IMAGE, "w:1");
  t.equal(env.PARAM_RECONCILER_URL, "http://r:1");
  t.equal(env.PARAM_ALLOW_UNMATCHED_MIGRATORS, "true");
  t.equal(env.ARGOCD_ENV_FOO, "bar");
  t.match(JSON.parse(env.ARGOCD_APP_PARAMETERS ?? "[]"), [{ name: "waiter-image", string: "w:1" }]);
  t.match(env.KUBE_API_VERSIONS, /migrations\.coderanger\.net\/v1beta1/);
});

t.test("the Service proxy forwards to a live endpoint, refuses while paused, and resumes", async (t) => {
  const server = http.createServer((_q, res) => res.end("pong"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  const port = (server.address() as { port: number }).port;
  const proxy = await ServiceProxy.start([1, port]); // port 1: a dead endpoint first
  t.teardown(() => proxy.close());
  const get = async (): Promise<string> => (await fetch(proxy.url, { headers: { connection: "close" } })).text();
  t.equal(await get(), "pong", "a dead endpoint is skipped");
  proxy.pause();
  await t.rejects(get(), "paused: connection reset");
  proxy.resume();
  t.equal(await get(), "pong");
  t.ok(proxy.refused >= 1);
});

t.test(
  "sync: generate in the plugin image, server-side apply in waves; without a reconciler pods stay gated",
  async (t) => {
    const env = await nodeEnv(t);
    const ns = env.namespace;
    // The Migrator kind, but no reconciler: the waiters are told a loopback port nothing listens on.
    await applyChartCrds(env.kube);
    const reconcilerUrl = `http://127.0.0.1:${await freePort()}`;
    await env.kube.createObject(databaseSecret(ns, env.database?.url ?? "") as unknown as KubeObject);
    const digest = await pushBuild(env.images, "v1");
    const repo = fs.mkdtempSync(path.join(os.tmpdir(), "dm-sync-repo-"));
    t.teardown(() => fs.rmSync(repo, { recursive: true, force: true }));
    // The plugin reads the checkout as the sidecar's user (999).
    fs.chmodSync(repo, 0o755);
    const appDir = checkout(env.images, path.join(repo, "shop"));
    const options: SyncOptions = {
      kubeconfig: env.world.adminKubeconfig,
      namespace: ns,
      appName: "shop",
      waiterImage: env.world.images.reconciler,
      reconcilerUrl,
      pluginImage: env.world.images.plugin,
    };

    const first = await sync(appDir, options);
    t.comment(`generate ${first.generateMs} ms, apply ${first.applyMs} ms`);
    t.same(
      first.applied.map((a) => `${a.wave} ${a.object.kind}/${a.object.metadata.name}`),
      ["-1 Migrator/myapp-migrations", "0 ConfigMap/myapp-config", "0 Deployment/myapp"],
      "the Migrator goes a wave before the workload it gates",
    );
    const deployment = await env.kube.getObject<DeploymentView>("apps/v1", "Deployment", ns, DEPLOYMENT);
    const init = deployment?.spec.template.spec?.initContainers ?? [];
    const waiter = `${WAITER_CONTAINER_PREFIX}${MIGRATOR}`;
    t.equal(init[0]?.name, waiter);
    t.equal(init[0]?.image, env.world.images.reconciler, "the waiter image parameter");
    t.match(init[0]?.args, ["--api", reconcilerUrl, "--migrator", MIGRATOR, "--container", APP_CONTAINER]);
    t.equal(
      deployment?.spec.template.spec?.containers[0]?.image,
      env.images.ref(APP_REPOSITORY, APP_TAG),
      "the app keeps git's mutable tag",
    );
    t.match(deployment?.metadata.managedFields, [{ manager: FIELD_MANAGER, operation: "Apply" }]);
    t.ok(await env.kube.getObject(API_VERSION, KIND, ns, MIGRATOR), "Migrator applied");

    // The pods are scheduled onto the node and gated in their waiter, which cannot reach the
    // reconciler; the app container never starts.
    const pods = await waitFor(
      async () => {
        const list = await env.kube.get<{ items: Pod[] }>(`/api/v1/namespaces/${ns}/pods`);
        const waiting = list.items.filter((p) =>
          (p.status?.initContainerStatuses ?? []).some((c) => c.name === waiter && c.state?.running),
        );
        return waiting.length === 2 ? waiting : undefined;
      },
      { what: "2 pods running their waiter", timeoutMs: 120_000 },
    );
    for (const p of pods) {
      const name = p.metadata.name ?? "";
      t.equal(p.spec.nodeName, env.nodeName, `${name}: on the node`);
      const log = await waitFor(
        async () => {
          const text = await env.logs(name, waiter);
          return /waiter API unreachable \(ECONNREFUSED\)/.test(text) ? text : undefined;
        },
        {
          what: `${name}'s waiter to find the reconciler unreachable`,
          timeoutMs: 60_000,
          describe: () => env.logs(name, waiter),
        },
      );
      t.match(log, reconcilerUrl, `${name}: the waiter asked the reconciler-url it was given`);
      t.match(
        p.status?.containerStatuses?.find((c) => c.name === APP_CONTAINER)?.state?.waiting?.reason,
        "PodInitializing",
        `${name}: the app container waits for its init containers`,
      );
    }
    await env.starts.settled();
    t.same(
      env.starts.starts.filter((s) => s.container === APP_CONTAINER),
      [],
      "containerd started no app container",
    );
    t.same(
      env.starts.starts
        .filter((s) => s.container === waiter)
        .map((s) => s.pod)
        .sort(),
      pods.map((p) => p.metadata.name).sort(),
      "containerd started each pod's waiter",
    );
    t.equal(await env.images.digestOf(APP_REPOSITORY, APP_TAG), digest, "the tag still names the pushed build");

    // Same git, same output: a second sync changes nothing; a restart rolls a new template.
    const generation = deployment?.metadata.generation;
    await sync(appDir, options);
    const again = await env.kube.getObject<DeploymentView>("apps/v1", "Deployment", ns, DEPLOYMENT);
    t.equal(again?.metadata.generation, generation, "re-sync is a no-op");
    const stamp = await restart(env.kube, { namespace: ns, name: DEPLOYMENT });
    const restarted = await env.kube.getObject<DeploymentView>("apps/v1", "Deployment", ns, DEPLOYMENT);
    t.equal(restarted?.spec.template.metadata?.annotations?.[RESTARTED_AT], stamp);
    t.equal(restarted?.metadata.generation, (generation ?? 0) + 1);
  },
);
