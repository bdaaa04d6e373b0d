// Other shapes of the application on the real node: an Argo Rollout (a minimal Rollout CRD; the
// test plays the Rollouts controller's ReplicaSet step), two Migrators selecting one workload, and
// a workload that opts out of waiting (migrations.coderanger.net/no-wait: "true"). Every variant is
// the shop's own manifests with files replaced or added, its pod template the one of
// e2e/apps/shop/manifests/deployment.yaml (host network, the shop's image, its Secret).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import t from "tap";
import type { Test } from "tap";
import { parse, stringify } from "yaml";
import type { KubeObject, PodTemplateSpec } from "@digest-migrations/shared";
import { WAITER_CONTAINER_PREFIX, migrationJobName } from "@digest-migrations/shared";
import { APP_CONTAINER, DEPLOYMENT, MANIFESTS_DIR, MIGRATOR } from "../apps/shop/builds.ts";
import { historyProblems } from "../apps/shop/database.ts";
import { ROLLOUT_CRD } from "../harness/crds.ts";
import type { KubeClient } from "../kit/client.ts";
import { waitFor } from "../kit/wait.ts";
import { serverSideApply, waitEstablished } from "../pipeline/apply.ts";
import { setupShop } from "../pipeline/stack.ts";
import { startShop } from "../pipeline/start-shop.ts";
import { nodeEnv } from "../world/env.ts";
import { timings } from "./report.ts";

interface WorkloadView extends KubeObject {
  spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: PodTemplateSpec };
}

/** The shop's Deployment as its repository has it (deployment.yaml). */
function shopDeployment(): WorkloadView {
  return parse(fs.readFileSync(path.join(MANIFESTS_DIR, "deployment.yaml"), "utf8")) as WorkloadView;
}

/** A copy of the shop's manifests with some files replaced (an object, written as YAML), added or removed (null). */
function appVariant(t: Test, files: Record<string, KubeObject | null>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dm-app-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const app = path.join(dir, "shop");
  fs.cpSync(MANIFESTS_DIR, app, { recursive: true });
  for (const [name, obj] of Object.entries(files)) {
    if (obj === null) fs.rmSync(path.join(app, name));
    else fs.writeFileSync(path.join(app, name), stringify(obj));
  }
  return app;
}

/** A Migrator running the shop's `migrate` for the pods `selector` matches. */
function migrator(name: string, selector: Record<string, string>): KubeObject {
  return {
    apiVersion: "migrations.coderanger.net/v1beta1",
    kind: "Migrator",
    metadata: { name },
    spec: { selector: { matchLabels: selector }, command: ["migrate"] },
  };
}

/** The Rollouts controller's part this test needs: revision `n` as a ReplicaSet owned by the Rollout. */
async function rollOutRevision(client: KubeClient, ns: string, revision: number, replicas: number): Promise<void> {
  const rollout = await client.getObject<WorkloadView>("argoproj.io/v1alpha1", "Rollout", ns, DEPLOYMENT);
  if (!rollout) throw new Error(`Rollout ${ns}/${DEPLOYMENT} not found`);
  const hash = `rev${revision}`;
  const template = structuredClone(rollout.spec.template);
  template.metadata = {
    ...template.metadata,
    labels: { ...template.metadata?.labels, "rollouts-pod-template-hash": hash },
  };
  await client.createObject({
    apiVersion: "apps/v1",
    kind: "ReplicaSet",
    metadata: {
      name: `${DEPLOYMENT}-${hash}`,
      namespace: ns,
      labels: template.metadata.labels,
      annotations: { "rollout.argoproj.io/revision": String(revision) },
      ownerReferences: [
        {
          apiVersion: "argoproj.io/v1alpha1",
          kind: "Rollout",
          name: DEPLOYMENT,
          uid: rollout.metadata.uid ?? "",
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      replicas,
      selector: { matchLabels: { ...rollout.spec.selector.matchLabels, "rollouts-pod-template-hash": hash } },
      template,
    },
  });
}

t.test("an Argo Rollout: its ReplicaSets' pods are gated and migrated once per digest", async (t) => {
  const clock = timings(t);
  const env = await nodeEnv(t);
  // The CRD before the reconciler starts, as in a cluster that runs Argo Rollouts.
  await serverSideApply(env.kube, ROLLOUT_CRD);
  await waitEstablished(env.kube, "rollouts.argoproj.io");
  const { kind: _kind, apiVersion: _apiVersion, ...deployment } = shopDeployment();
  const rollout = {
    apiVersion: "argoproj.io/v1alpha1",
    kind: "Rollout",
    ...deployment,
    spec: { ...deployment.spec, strategy: { canary: {} } },
  } as KubeObject;
  const shop = await setupShop(env, { appDir: appVariant(t, { "deployment.yaml": null, "rollout.yaml": rollout }) });
  t.teardown(() => shop.stop());
  clock.mark("environment");

  const v1 = await shop.push("v1");
  const synced = await shop.sync();
  const applied = synced.applied.find((a) => a.object.kind === "Rollout")?.object as WorkloadView | undefined;
  t.equal(
    applied?.spec.template.spec?.initContainers?.[0]?.name,
    `${WAITER_CONTAINER_PREFIX}${MIGRATOR}`,
    "waiter injected into the Rollout's template",
  );
  await rollOutRevision(env.kube, shop.namespace, 1, 2);
  await shop.waitMigrated(v1);
  await shop.waitRolledOut(v1);
  clock.mark("revision 1");

  const v2 = await shop.push("v2");
  await rollOutRevision(env.kube, shop.namespace, 2, 2);
  await shop.waitMigrated(v2);
  await env.kube.patchObject("apps/v1", "ReplicaSet", shop.namespace, `${DEPLOYMENT}-rev1`, { spec: { replicas: 0 } });
  await shop.waitRolledOut(v2);
  clock.mark("revision 2");
  const h = await shop.history();
  t.same(
    h.runs.map((r) => [r.digest, r.status]),
    [
      [v1, "succeeded"],
      [v2, "succeeded"],
    ],
  );
  t.same(historyProblems(h), []);
  t.same(await shop.gatingProblems(), [], "every app container started once, from its pinned, migrated digest");
});

t.test("two Migrators select one workload: the pods wait for both, each migrates once per digest", async (t) => {
  const clock = timings(t);
  const audit = "myapp-audit";
  const shop = await startShop(t, {
    appDir: appVariant(t, { "migrator-audit.yaml": migrator(audit, { app: DEPLOYMENT }) }),
  });
  const v1 = await shop.push("v1");
  const synced = await shop.sync();
  const deployment = synced.applied.find((a) => a.object.kind === "Deployment")?.object as WorkloadView | undefined;
  t.same(
    deployment?.spec.template.spec?.initContainers?.map((c) => c.name),
    [`${WAITER_CONTAINER_PREFIX}${audit}`, `${WAITER_CONTAINER_PREFIX}${MIGRATOR}`],
    "one waiter per Migrator, in name order",
  );
  await shop.waitMigrated(v1, MIGRATOR);
  await shop.waitMigrated(v1, audit);
  await shop.waitRolledOut(v1);
  clock.mark("v1");
  const v2 = await shop.push("v2");
  await shop.restart();
  await shop.waitMigrated(v2, MIGRATOR);
  await shop.waitMigrated(v2, audit);
  await shop.waitRolledOut(v2);
  clock.mark("v2");
  const h = await shop.history();
  for (const digest of [v1, v2]) {
    for (const name of [MIGRATOR, audit]) {
      const job = migrationJobName(name, digest);
      t.equal(
        h.runs.filter((r) => r.digest === digest && r.pod?.startsWith(`${job}-`)).length,
        1,
        `one run of ${name} for ${digest.slice(0, 19)}`,
      );
    }
  }
  t.same(historyProblems(h, { maxRunsPerDigest: 2 }), []);
  t.same(await shop.gatingProblems(), [], "every app container started once, from its pinned, migrated digest");
  // Each pod's waiters ran one after the other, each once (containerd's starts).
  t.same(shop.waiterRestarts(), [], "every waiter ran once");
  const waiters = new Set(
    shop.env.starts.starts.filter((s) => s.container.startsWith(WAITER_CONTAINER_PREFIX)).map((s) => s.container),
  );
  t.same([...waiters].sort(), [`${WAITER_CONTAINER_PREFIX}${audit}`, `${WAITER_CONTAINER_PREFIX}${MIGRATOR}`]);
});

t.test('a workload that opts out (no-wait: "true") gets no waiter and is never gated', async (t) => {
  const clock = timings(t);
  const gated = shopDeployment();
  const labels = { ...gated.spec.template.metadata?.labels, "part-of": "shop" };
  gated.spec.template.metadata = { ...gated.spec.template.metadata, labels };
  const worker = structuredClone(gated);
  worker.metadata = {
    name: "worker",
    labels: { app: "worker" },
    annotations: { "migrations.coderanger.net/no-wait": "true" },
  };
  worker.spec.replicas = 1;
  worker.spec.selector = { matchLabels: { app: "worker" } };
  worker.spec.template.metadata = { labels: { app: "worker", "part-of": "shop" } };
  const shop = await startShop(t, {
    appDir: appVariant(t, {
      "migrator.yaml": migrator(MIGRATOR, { "part-of": "shop" }),
      "deployment.yaml": gated,
      "worker.yaml": worker,
    }),
  });
  const v1 = await shop.push("v1");
  const synced = await shop.sync();
  const applied = synced.applied.find((a) => a.object.metadata.name === "worker")?.object as WorkloadView | undefined;
  t.same(applied?.spec.template.spec?.initContainers ?? [], [], "no waiter in the opted-out workload");
  await shop.waitMigrated(v1);
  await shop.waitRolledOut(v1);
  // Not gated, the worker may start before the migration and refuse (its schema is missing); the
  // kubelet restarts it until it runs.
  await waitFor(async () => (await shop.pods("worker")).some((p) => p.appRunning), {
    what: "the worker to run",
    timeoutMs: 120_000,
    describe: () => shop.describePods("worker"),
  });
  clock.mark("rolled out");
  t.same(await shop.gatingProblems({ app: DEPLOYMENT }), [], "the gated workload started only after migration");
  const workerPods = await shop.pods("worker");
  t.ok(
    workerPods.every((p) => !(p.pod.spec.initContainers ?? []).some((c) => c.name.startsWith(WAITER_CONTAINER_PREFIX))),
    "worker pods have no waiter",
  );
  await shop.env.starts.settled();
  t.ok(
    shop.env.starts.starts.some((s) => s.container === APP_CONTAINER && s.pod.startsWith("worker-")),
    "containerd started the worker's app container",
  );
  t.equal((await shop.history()).runs.length, 1, "one migration for the digest");
});
