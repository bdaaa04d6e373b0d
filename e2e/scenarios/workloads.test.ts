// Other shapes of the application: an Argo Rollout (a minimal Rollout CRD; the test plays the
// Rollouts controller's ReplicaSet step), two Migrators selecting one workload, and a workload that
// opts out of waiting (migrations.coderanger.net/no-wait: "true").
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import t from "tap";
import type { Test } from "tap";
import type { KubeObject, PodTemplateSpec } from "@digest-migrations/shared";
import { WAITER_CONTAINER_PREFIX, migrationJobName } from "@digest-migrations/shared";
import { MANIFESTS_DIR, MIGRATOR } from "../apps/shop/builds.ts";
import { historyProblems } from "../apps/shop/database.ts";
import { ROLLOUT_CRD } from "../harness/crds.ts";
import { testEnv } from "../harness/env.ts";
import { waitFor } from "../kit/wait.ts";
import { KubeClient } from "../kit/client.ts";
import { serverSideApply, waitEstablished } from "../pipeline/apply.ts";
import { setupShop } from "../pipeline/stack.ts";
import { startShop } from "../pipeline/start-shop.ts";
import { timings } from "./report.ts";

/** A copy of the shop's manifests with some files replaced or added (a branch of the repository). */
function appVariant(t: Test, files: Record<string, string | null>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dm-app-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const app = path.join(dir, "shop");
  fs.cpSync(MANIFESTS_DIR, app, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    if (text === null) fs.rmSync(path.join(app, name));
    else fs.writeFileSync(path.join(app, name), text);
  }
  return app;
}

const POD_SPEC = `
      terminationGracePeriodSeconds: 5
      containers:
        - name: app
          image: registry.example/app:latest
          env:
            - name: DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: myapp-db
                  key: url
          envFrom:
            - configMapRef:
                name: myapp-config`;

/** A minimal Rollout CRD: enough for the API to store Rollouts (no schema, as Argo's is huge). */
interface RolloutView extends KubeObject {
  spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: PodTemplateSpec };
}

/** The Rollouts controller's part this test needs: revision `n` as a ReplicaSet owned by the Rollout. */
async function rollOutRevision(client: KubeClient, ns: string, revision: number, replicas: number): Promise<void> {
  const rollout = await client.getObject<RolloutView>("argoproj.io/v1alpha1", "Rollout", ns, "myapp");
  if (!rollout) throw new Error(`Rollout ${ns}/myapp not found`);
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
      name: `myapp-${hash}`,
      namespace: ns,
      labels: template.metadata.labels,
      annotations: { "rollout.argoproj.io/revision": String(revision) },
      ownerReferences: [
        {
          apiVersion: "argoproj.io/v1alpha1",
          kind: "Rollout",
          name: "myapp",
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
  const env = await testEnv(t);
  const admin = KubeClient.fromFile(env.cluster.adminKubeconfig);
  await serverSideApply(admin, ROLLOUT_CRD);
  await waitEstablished(admin, "rollouts.argoproj.io");
  const rolloutYaml = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: myapp
spec:
  replicas: 2
  strategy:
    canary: {}
  selector:
    matchLabels:
      app: myapp
  template:
    metadata:
      labels:
        app: myapp
    spec:${POD_SPEC}
`;
  const appDir = appVariant(t, { "deployment.yaml": null, "rollout.yaml": rolloutYaml });
  const shop = await setupShop(env, { appDir });
  t.teardown(() => shop.stop());
  clock.mark("environment");

  const v1 = shop.push("v1");
  const synced = await shop.sync();
  const rollout = synced.applied.find((a) => a.object.kind === "Rollout")?.object as RolloutView | undefined;
  t.equal(
    rollout?.spec.template.spec?.initContainers?.[0]?.name,
    `${WAITER_CONTAINER_PREFIX}${MIGRATOR}`,
    "waiter injected",
  );
  await rollOutRevision(admin, shop.namespace, 1, 2);
  await shop.waitMigrated(v1);
  await shop.waitRolledOut(v1);
  clock.mark("revision 1");

  const v2 = shop.push("v2");
  await rollOutRevision(admin, shop.namespace, 2, 2);
  await shop.waitMigrated(v2);
  await admin.patchObject("apps/v1", "ReplicaSet", shop.namespace, "myapp-rev1", { spec: { replicas: 0 } });
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
  t.same(await shop.gatingProblems(), []);
});

t.test("two Migrators select one workload: the pods wait for both, each migrates once per digest", async (t) => {
  const clock = timings(t);
  const audit = `apiVersion: migrations.coderanger.net/v1beta1
kind: Migrator
metadata:
  name: myapp-audit
spec:
  selector:
    matchLabels:
      app: myapp
  command:
    - migrate
`;
  const shop = await startShop(t, { appDir: appVariant(t, { "migrator-audit.yaml": audit }) });
  const v1 = shop.push("v1");
  const synced = await shop.sync();
  const deployment = synced.applied.find((a) => a.object.kind === "Deployment")?.object as RolloutView | undefined;
  t.same(
    deployment?.spec.template.spec?.initContainers?.map((c) => c.name),
    [`${WAITER_CONTAINER_PREFIX}myapp-audit`, `${WAITER_CONTAINER_PREFIX}${MIGRATOR}`],
    "one waiter per Migrator, in name order",
  );
  await shop.waitMigrated(v1, MIGRATOR);
  await shop.waitMigrated(v1, "myapp-audit");
  await shop.waitRolledOut(v1);
  const v2 = shop.push("v2");
  await shop.restart();
  await shop.waitMigrated(v2, MIGRATOR);
  await shop.waitMigrated(v2, "myapp-audit");
  await shop.waitRolledOut(v2);
  clock.mark("two digests, two Migrators");
  const h = await shop.history();
  for (const digest of [v1, v2]) {
    for (const migrator of [MIGRATOR, "myapp-audit"]) {
      const job = migrationJobName(migrator, digest);
      t.equal(
        h.runs.filter((r) => r.digest === digest && r.pod?.startsWith(`${job}-`)).length,
        1,
        `one run of ${migrator} for ${digest.slice(0, 19)}`,
      );
    }
  }
  t.same(historyProblems(h, { maxRunsPerDigest: 2 }), []);
  t.same(await shop.gatingProblems(), []);
});

t.test('a workload that opts out (no-wait: "true") gets no waiter and is never gated', async (t) => {
  const clock = timings(t);
  const migrator = `apiVersion: migrations.coderanger.net/v1beta1
kind: Migrator
metadata:
  name: myapp-migrations
spec:
  selector:
    matchLabels:
      part-of: shop
  command:
    - migrate
`;
  const deployment = (name: string, annotations: string): string => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
${annotations}spec:
  replicas: ${name === "myapp" ? 2 : 1}
  selector:
    matchLabels:
      app: ${name}
  template:
    metadata:
      labels:
        app: ${name}
        part-of: shop
    spec:${POD_SPEC}
`;
  const appDir = appVariant(t, {
    "migrator.yaml": migrator,
    "deployment.yaml": deployment("myapp", ""),
    "worker.yaml": deployment("worker", `  annotations:\n    migrations.coderanger.net/no-wait: "true"\n`),
  });
  const shop = await startShop(t, { appDir });
  const v1 = shop.push("v1");
  const synced = await shop.sync();
  const worker = synced.applied.find((a) => a.object.metadata.name === "worker")?.object as RolloutView | undefined;
  t.same(worker?.spec.template.spec?.initContainers ?? [], [], "no waiter in the opted-out workload");
  await shop.waitMigrated(v1);
  await shop.waitRolledOut(v1);
  await waitFor(async () => (await shop.pods("worker")).some((p) => p.appRunning), {
    what: "the worker to run",
    timeoutMs: 60_000,
  });
  clock.mark("rolled out");
  t.same(await shop.gatingProblems({ app: "myapp" }), [], "the gated workload started only after migration");
  const workerPods = await shop.pods("worker");
  t.ok(
    workerPods.every((p) => !(p.pod.spec.initContainers ?? []).some((c) => c.name.startsWith(WAITER_CONTAINER_PREFIX))),
    "worker pods have no waiter",
  );
  t.equal((await shop.history()).runs.length, 1, "one migration for the digest");
});
