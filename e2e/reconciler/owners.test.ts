// Pods owned by other workloads: a StatefulSet, a DaemonSet, a Job of a CronJob, and an Argo Rollout with
// and without workloadRef (its CRD installed here; its controller played by the test, which creates
// the Rollout's ReplicaSet as Argo would). On the real node each workload's own controller makes the
// pods, the kubelet runs them gated, and the one migration Job runs the digest containerd started.
import t from "tap";
import type { Test } from "tap";
import { LABELS } from "@digest-migrations/shared";
import type { KubeObject, Pod } from "@digest-migrations/shared";
import { statefulSet } from "../harness/objects.ts";
import { waitFor } from "../kit/wait.ts";
import { serverSideApply, waitEstablished } from "../pipeline/apply.ts";
import {
  appContainer,
  appImage,
  appPodSpec,
  describeMigrator,
  reconcilerEnv,
  runningImages,
  unmigratedStarts,
} from "./setup.ts";
import type { ReconcilerEnv } from "./setup.ts";

/** The env variable that says which object's pod template a migration Job was cloned from. */
const SOURCE = "TEMPLATE_SOURCE";

function template(
  env: ReconcilerEnv,
  app: string,
  migrator: string,
  source: string,
  extra: Record<string, unknown> = {},
): KubeObject["spec"] {
  const container = appContainer(env);
  container.env = [...(container.env ?? []), { name: SOURCE, value: source }];
  return {
    metadata: { labels: { app } },
    spec: appPodSpec(env, {
      terminationGracePeriodSeconds: 1,
      initContainers: [env.waiter(migrator)],
      containers: [container],
      ...extra,
    }),
  };
}

/** The Migrator records the digest, a pod runs it, and the one migration Job was cloned from `source`. */
async function released(
  t: Test,
  env: ReconcilerEnv,
  app: string,
  name: string,
  digest: string,
  source: string,
): Promise<void> {
  await env.waitReady(name, digest);
  await waitFor(async () => runningImages(await env.pods(`app=${app}`)).some((id) => id.endsWith(digest)), {
    what: `a ${app} pod to run ${digest}`,
    timeoutMs: 120_000,
    describe: () => describeMigrator(env, name),
  });
  const jobs = (await env.jobs()).filter((j) => j.metadata.labels?.[LABELS.migrator] === name);
  t.equal(jobs.length, 1, `${name}: one migration Job`);
  const container = (jobs[0]?.spec as { template: { spec: Pod["spec"] } } | undefined)?.template.spec.containers[0];
  t.equal(
    container?.env?.find((e) => e.name === SOURCE)?.value,
    source,
    `${name}: the Job is cloned from the ${source}'s pod template`,
  );
  t.equal(container?.image, `${env.ref()}@${digest}`, `${name}: the Job runs the digest`);
  t.same(await unmigratedStarts(env, `${app}-`, [digest]), [], `${name}: the app started on the migrated digest`);
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

t.test("StatefulSet, DaemonSet, CronJob and Argo Rollout pods", async (t) => {
  // The Rollout API is served before the reconciler starts (the shared control plane keeps it), so
  // the reconciler watches Rollouts from the start rather than at its next discovery (every 30 s).
  const env = await reconcilerEnv(t, {
    async prepare(env) {
      await serverSideApply(env.kube, ROLLOUT_CRD);
      await waitEstablished(env.kube, ROLLOUT_CRD.metadata.name);
    },
  });
  const digest = await env.push(appImage("v1"));

  await t.test("StatefulSet", async () => {
    await env.migrator("sts", { selector: { matchLabels: { app: "sts" } }, command: ["migrate"] });
    await env.kube.createObject(statefulSet(env.namespace, "sts", template(env, "sts", "sts", "StatefulSet")));
    await released(t, env, "sts", "sts", digest, "StatefulSet");
  });

  await t.test("DaemonSet", async () => {
    await env.migrator("ds", { selector: { matchLabels: { app: "ds" } }, command: ["migrate"] });
    await env.kube.createObject({
      apiVersion: "apps/v1",
      kind: "DaemonSet",
      metadata: { name: "ds", namespace: env.namespace },
      spec: {
        selector: { matchLabels: { app: "ds" } },
        template: template(env, "ds", "ds", "DaemonSet"),
      },
    });
    await released(t, env, "ds", "ds", digest, "DaemonSet");
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
        jobTemplate: {
          spec: { backoffLimit: 0, template: template(env, "cron", "cron", "CronJob", { restartPolicy: "Never" }) },
        },
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
      spec: { backoffLimit: 0, template: template(env, "cron", "cron", "Job", { restartPolicy: "Never" }) },
    });
    await released(t, env, "cron", "cron", digest, "CronJob");
  });

  await t.test("Argo Rollout, with and without workloadRef", async (t) => {
    for (const ref of [false, true]) {
      const app = ref ? "ref" : "plain";
      await env.migrator(app, { selector: { matchLabels: { app } }, command: ["migrate"] });
      if (ref) {
        await env.kube.createObject({
          apiVersion: "apps/v1",
          kind: "Deployment",
          metadata: { name: `${app}-template`, namespace: env.namespace },
          spec: {
            replicas: 0,
            selector: { matchLabels: { app } },
            template: template(env, app, app, "Deployment"),
          },
        });
      }
      const rollout = await env.kube.createObject<KubeObject>({
        apiVersion: "argoproj.io/v1alpha1",
        kind: "Rollout",
        metadata: { name: app, namespace: env.namespace },
        spec: ref
          ? { replicas: 1, workloadRef: { apiVersion: "apps/v1", kind: "Deployment", name: `${app}-template` } }
          : { replicas: 1, selector: { matchLabels: { app } }, template: template(env, app, app, "Rollout") },
      });
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
        spec: { replicas: 1, selector: { matchLabels: { app } }, template: template(env, app, app, "ReplicaSet") },
      });
      // The Job comes from what git declares: the Rollout's template, or its workloadRef'd Deployment's.
      await released(t, env, app, app, digest, ref ? "Deployment" : "Rollout");
    }
  });
});
