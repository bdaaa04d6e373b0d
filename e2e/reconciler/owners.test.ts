// Pods owned by other workloads: a StatefulSet, a Job of a CronJob, and an Argo Rollout with and
// without workloadRef (its CRD installed here; its controller played by the test, which creates
// the Rollout's ReplicaSet as Argo would).
import t from "tap";
import type { KubeObject } from "@digest-migrations/shared";
import { waitFor } from "../harness/wait.ts";
import { APP_IMAGE, appContainer, appImage, describeMigrator, reconcilerEnv, runningImages } from "./setup.ts";
import type { ReconcilerEnv } from "./setup.ts";

function template(env: ReconcilerEnv, app: string, migrator: string, restartPolicy?: string): KubeObject["spec"] {
  return {
    metadata: { labels: { app } },
    spec: {
      ...(restartPolicy ? { restartPolicy } : {}),
      terminationGracePeriodSeconds: 1,
      initContainers: [env.waiter(migrator)],
      containers: [appContainer(env)],
    },
  };
}

async function released(env: ReconcilerEnv, app: string, name: string, digest: string): Promise<void> {
  await env.waitReady(name, digest, 90_000);
  await waitFor(async () => runningImages(await env.pods(`app=${app}`)).some((id) => id.endsWith(digest)), {
    what: `a ${app} pod to run ${digest}`,
    timeoutMs: 60_000,
    describe: () => describeMigrator(env, name),
  });
}

const ROLLOUT_CRD = {
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: "rollouts.argoproj.io" },
  spec: {
    group: "argoproj.io",
    names: { kind: "Rollout", plural: "rollouts", singular: "rollout", listKind: "RolloutList" },
    scope: "Namespaced",
    versions: [
      {
        name: "v1alpha1",
        served: true,
        storage: true,
        schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
      },
    ],
  },
};

t.test("StatefulSet, CronJob and Argo Rollout pods", async (t) => {
  const env = await reconcilerEnv(t, { controller: { discoverySeconds: 1 } });
  const digest = env.registry.push(APP_IMAGE, "latest", appImage("v1"));

  await t.test("StatefulSet", async () => {
    await env.migrator("sts", { selector: { matchLabels: { app: "sts" } }, command: ["migrate"] });
    await env.kube.createObject({
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name: "sts", namespace: env.namespace },
      spec: {
        serviceName: "sts",
        replicas: 1,
        selector: { matchLabels: { app: "sts" } },
        template: template(env, "sts", "sts"),
      },
    });
    await released(env, "sts", "sts", digest);
  });

  await t.test("Job of a CronJob", async () => {
    await env.migrator("cron", { selector: { matchLabels: { app: "cron" } }, command: ["migrate"] });
    const cronJob = await env.kube.createObject<KubeObject>({
      apiVersion: "batch/v1beta1",
      kind: "CronJob",
      metadata: { name: "cron", namespace: env.namespace },
      spec: {
        schedule: "0 0 1 1 *",
        suspend: true,
        jobTemplate: { spec: { backoffLimit: 0, template: template(env, "cron", "cron", "Never") } },
      },
    });
    // The CronJob controller would create this Job at the scheduled time.
    await env.kube.createObject({
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: {
        name: "cron-1",
        namespace: env.namespace,
        ownerReferences: [
          {
            apiVersion: "batch/v1beta1",
            kind: "CronJob",
            name: "cron",
            uid: cronJob.metadata.uid ?? "",
            controller: true,
          },
        ],
      },
      spec: { backoffLimit: 0, template: template(env, "cron", "cron", "Never") },
    });
    await released(env, "cron", "cron", digest);
  });

  await t.test("Argo Rollout, with and without workloadRef", async (t) => {
    await env.kube.createObject(ROLLOUT_CRD).catch((error: { status?: number }) => {
      if (error.status !== 409) throw error;
    });
    for (const ref of [false, true]) {
      const app = ref ? "ref" : "plain";
      await env.migrator(app, { selector: { matchLabels: { app } }, command: ["migrate"] });
      if (ref) {
        await env.kube.createObject({
          apiVersion: "apps/v1",
          kind: "Deployment",
          metadata: { name: `${app}-template`, namespace: env.namespace },
          spec: { replicas: 0, selector: { matchLabels: { app } }, template: template(env, app, app) },
        });
      }
      const rollout = await waitFor(
        () =>
          env.kube.createObject<KubeObject>({
            apiVersion: "argoproj.io/v1alpha1",
            kind: "Rollout",
            metadata: { name: app, namespace: env.namespace },
            spec: ref
              ? { replicas: 1, workloadRef: { apiVersion: "apps/v1", kind: "Deployment", name: `${app}-template` } }
              : { replicas: 1, selector: { matchLabels: { app } }, template: template(env, app, app) },
          }),
        { what: "the Rollout CRD to be served", timeoutMs: 30_000 },
      );
      // Argo's controller would create this ReplicaSet; the ReplicaSet controller makes the pod.
      await env.kube.createObject({
        apiVersion: "apps/v1",
        kind: "ReplicaSet",
        metadata: {
          name: `${app}-rs`,
          namespace: env.namespace,
          annotations: { "rollout.argoproj.io/revision": "1" },
          ownerReferences: [
            {
              apiVersion: "argoproj.io/v1alpha1",
              kind: "Rollout",
              name: app,
              uid: rollout.metadata.uid ?? "",
              controller: true,
            },
          ],
        },
        spec: { replicas: 1, selector: { matchLabels: { app } }, template: template(env, app, app) },
      });
      await released(env, app, app, digest);
      t.pass(`Rollout ${ref ? "with" : "without"} workloadRef`);
    }
  });
});
