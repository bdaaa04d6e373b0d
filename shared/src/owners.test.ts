import t from "tap";
import type { KubeObject, Pod, PodTemplateSpec } from "./k8s.ts";
import { type OwnerLookup, WORKLOAD_KINDS, isWorkload, podTemplateOf, templateForPod } from "./owners.ts";

const NS = "apps";

function template(image: string): PodTemplateSpec {
  return { metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "app", image }] } };
}

function obj(apiVersion: string, kind: string, name: string, extra: Partial<KubeObject> = {}): KubeObject {
  return { apiVersion, kind, ...extra, metadata: { name, namespace: NS, uid: `uid-${name}`, ...extra.metadata } };
}

function controller(o: KubeObject): KubeObject["metadata"] {
  return {
    ownerReferences: [
      { apiVersion: o.apiVersion, kind: o.kind, name: o.metadata.name!, uid: o.metadata.uid!, controller: true },
    ],
  };
}

function pod(owner?: KubeObject, name = "web-abc"): Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: NS, uid: `uid-${name}`, labels: { app: "web" }, ...(owner ? controller(owner) : {}) },
    spec: { containers: [{ name: "app", image: "app:pod" }] },
  };
}

class Lookup implements OwnerLookup {
  readonly objects: KubeObject[];
  readonly calls: string[] = [];
  constructor(...objects: KubeObject[]) {
    this.objects = objects;
  }
  get(apiVersion: string, kind: string, namespace: string, name: string): KubeObject | undefined {
    this.calls.push(`${apiVersion} ${kind} ${namespace}/${name}`);
    return this.objects.find(
      (o) =>
        o.apiVersion === apiVersion &&
        o.kind === kind &&
        o.metadata.namespace === namespace &&
        o.metadata.name === name,
    );
  }
}

const deployment = obj("apps/v1", "Deployment", "web", { spec: { template: template("app:deploy") } });
const rs = obj("apps/v1", "ReplicaSet", "web-7d9", {
  metadata: { annotations: { "deployment.kubernetes.io/revision": "3" }, ...controller(deployment) },
  spec: { template: template("app:rs") },
});
const rollout = obj("argoproj.io/v1alpha1", "Rollout", "web", { spec: { template: template("app:rollout") } });
const rolloutRS = obj("apps/v1", "ReplicaSet", "web-r1", {
  metadata: { annotations: { "rollout.argoproj.io/revision": "5" }, ...controller(rollout) },
  spec: { template: template("app:rollout-rs") },
});
const refDeployment = obj("apps/v1", "Deployment", "web-base", {
  spec: { replicas: 0, template: template("app:ref") },
});
const refRollout = obj("argoproj.io/v1alpha1", "Rollout", "web-ref", {
  spec: { workloadRef: { apiVersion: "apps/v1", kind: "Deployment", name: "web-base" } },
});
const refRolloutRS = obj("apps/v1", "ReplicaSet", "web-ref-1", {
  metadata: { annotations: { "rollout.argoproj.io/revision": "2" }, ...controller(refRollout) },
  spec: { template: template("app:ref-rs") },
});
const sts = obj("apps/v1", "StatefulSet", "db", { spec: { template: template("app:sts") } });
const ds = obj("apps/v1", "DaemonSet", "agent", { spec: { template: template("app:ds") } });
const cronJob = obj("batch/v1", "CronJob", "nightly", {
  spec: { jobTemplate: { spec: { template: template("app:cron") } } },
});
const cronJobV1beta1 = obj("batch/v1beta1", "CronJob", "old", {
  spec: { jobTemplate: { spec: { template: template("app:cron-beta") } } },
});
const job = obj("batch/v1", "Job", "nightly-123", {
  metadata: controller(cronJob),
  spec: { template: template("app:job") },
});
const jobOfBeta = obj("batch/v1", "Job", "old-1", {
  metadata: controller(cronJobV1beta1),
  spec: { template: template("x") },
});
const bareJob = obj("batch/v1", "Job", "once", { spec: { template: template("app:once") } });
const orphanRS = obj("apps/v1", "ReplicaSet", "orphan", { spec: { template: template("app:orphan") } });
const custom = obj("example.com/v1", "Operator", "op");
const customRS = obj("apps/v1", "ReplicaSet", "custom-rs", {
  metadata: controller(custom),
  spec: { template: template("app:custom-rs") },
});
const rc = obj("v1", "ReplicationController", "legacy", { spec: { template: template("app:rc") } });

const everything = new Lookup(
  deployment, rs, rollout, rolloutRS, refDeployment, refRollout, refRolloutRS, sts, ds, cronJob, cronJobV1beta1,
  job, jobOfBeta, bareJob, orphanRS, custom, customRS, rc,
); // prettier-ignore

t.test("templateForPod walks the controller chain", async (t) => {
  const cases: { name: string; pod: Pod; image: string; owner: string; revision?: string }[] = [
    { name: "ReplicaSet → Deployment", pod: pod(rs), image: "app:deploy", owner: "Deployment web", revision: "3" },
    { name: "ReplicaSet → Rollout", pod: pod(rolloutRS), image: "app:rollout", owner: "Rollout web", revision: "5" },
    {
      name: "ReplicaSet → Rollout → workloadRef Deployment",
      pod: pod(refRolloutRS),
      image: "app:ref",
      owner: "Rollout web-ref",
      revision: "2",
    },
    { name: "StatefulSet", pod: pod(sts), image: "app:sts", owner: "StatefulSet db" },
    { name: "DaemonSet", pod: pod(ds), image: "app:ds", owner: "DaemonSet agent" },
    { name: "Job → CronJob", pod: pod(job), image: "app:cron", owner: "CronJob nightly" },
    { name: "Job → CronJob batch/v1beta1", pod: pod(jobOfBeta), image: "app:cron-beta", owner: "CronJob old" },
    { name: "bare Job", pod: pod(bareJob), image: "app:once", owner: "Job once" },
    { name: "ReplicaSet without controller", pod: pod(orphanRS), image: "app:orphan", owner: "ReplicaSet orphan" },
    {
      name: "ReplicaSet controlled by an unknown kind stops at the ReplicaSet",
      pod: pod(customRS),
      image: "app:custom-rs",
      owner: "ReplicaSet custom-rs",
    },
    { name: "ReplicationController", pod: pod(rc), image: "app:rc", owner: "ReplicationController legacy" },
    { name: "bare Pod", pod: pod(), image: "app:pod", owner: "Pod web-abc" },
    { name: "Pod controlled by an unknown kind", pod: pod(custom), image: "app:pod", owner: "Pod web-abc" },
  ];
  for (const c of cases) {
    const got = templateForPod(c.pod, everything);
    if (!got.ok) {
      t.fail(`${c.name}: ${got.message}`);
      continue;
    }
    t.equal(got.template.spec.containers[0]?.image, c.image, `${c.name}: template`);
    t.equal(`${got.owner.kind} ${got.owner.name}`, c.owner, `${c.name}: owner`);
    t.equal(got.owner.uid, `uid-${c.owner.split(" ")[1]}`, `${c.name}: owner uid`);
    t.equal(got.revision, c.revision, `${c.name}: revision`);
  }
});

t.test("templateForPod returns the owner's own template object", async (t) => {
  const got = templateForPod(pod(rs), everything);
  t.ok(got.ok && got.template === (deployment.spec as { template: unknown }).template);
  const p = pod();
  const bare = templateForPod(p, everything);
  t.ok(bare.ok && bare.template.spec === p.spec && bare.template.metadata === p.metadata);
});

t.test("non-controller ownerReferences are ignored", async (t) => {
  const p = pod();
  p.metadata.ownerReferences = [{ apiVersion: "apps/v1", kind: "ReplicaSet", name: "web-7d9", uid: "uid-web-7d9" }];
  const got = templateForPod(p, everything);
  t.match(got, { ok: true, owner: { kind: "Pod" } });
});

t.test("missing or replaced owners and broken templates", async (t) => {
  const missingDeployment = obj("apps/v1", "ReplicaSet", "lonely", {
    metadata: controller(obj("apps/v1", "Deployment", "gone")),
  });
  const replaced = { ...deployment, metadata: { ...deployment.metadata, uid: "uid-new" } };
  const brokenDeployment = obj("apps/v1", "Deployment", "broken", { spec: {} });
  const brokenRS = obj("apps/v1", "ReplicaSet", "broken-1", { metadata: controller(brokenDeployment) });
  const badRef = obj("argoproj.io/v1alpha1", "Rollout", "bad-ref", {
    spec: { workloadRef: { apiVersion: "apps/v1", kind: "StatefulSet", name: "x" } },
  });
  const badRefRS = obj("apps/v1", "ReplicaSet", "bad-ref-1", { metadata: controller(badRef) });
  const danglingRef = obj("argoproj.io/v1alpha1", "Rollout", "dangling", {
    spec: { workloadRef: { apiVersion: "apps/v1", kind: "Deployment", name: "nowhere" } },
  });
  const danglingRS = obj("apps/v1", "ReplicaSet", "dangling-1", { metadata: controller(danglingRef) });
  const lookup = new Lookup(missingDeployment, brokenDeployment, brokenRS, badRef, badRefRS, danglingRef, danglingRS);
  const cases: { name: string; pod: Pod; lookup: OwnerLookup; reason: string; message: RegExp }[] = [
    {
      name: "ReplicaSet missing",
      pod: pod(rs),
      lookup: new Lookup(),
      reason: "OwnerNotFound",
      message: /^Pod apps\/web-abc is controlled by ReplicaSet apps\/web-7d9, which was not found$/,
    },
    {
      name: "Deployment missing",
      pod: pod(missingDeployment),
      lookup,
      reason: "OwnerNotFound",
      message:
        /^Pod apps\/web-abc \(via ReplicaSet apps\/lonely\) is controlled by Deployment apps\/gone, which was not found$/,
    },
    {
      name: "Deployment replaced",
      pod: pod(rs),
      lookup: new Lookup(rs, replaced),
      reason: "OwnerNotFound",
      message: /Deployment apps\/web with uid uid-web, but that name now has uid uid-new/,
    },
    {
      name: "CronJob missing",
      pod: pod(job),
      lookup: new Lookup(job),
      reason: "OwnerNotFound",
      message: /CronJob apps\/nightly, which was not found/,
    },
    {
      name: "workloadRef Deployment missing",
      pod: pod(danglingRS),
      lookup,
      reason: "OwnerNotFound",
      message: /^Rollout apps\/dangling spec.workloadRef names Deployment apps\/nowhere, which was not found$/,
    },
    {
      name: "workloadRef to a StatefulSet",
      pod: pod(badRefRS),
      lookup,
      reason: "UnsupportedWorkloadRef",
      message: /Rollout apps\/bad-ref spec.workloadRef names apps\/v1 StatefulSet x; only apps Deployments/,
    },
    {
      name: "Deployment without template",
      pod: pod(brokenRS),
      lookup,
      reason: "TemplateNotFound",
      message: /^Deployment apps\/broken \(controller of Pod apps\/web-abc\) has no pod template$/,
    },
  ];
  for (const c of cases)
    t.match(templateForPod(c.pod, c.lookup), { ok: false, reason: c.reason, message: c.message }, c.name);
});

t.test("the lookup is asked with the owner reference's apiVersion and the pod's namespace", async (t) => {
  const lookup = new Lookup(job, cronJob);
  templateForPod(pod(job), lookup);
  t.same(lookup.calls, ["batch/v1 Job apps/nightly-123", "batch/v1 CronJob apps/nightly"]);
});

t.test("podTemplateOf", async (t) => {
  const cases: { name: string; workload: KubeObject; image: string | undefined }[] = [
    { name: "Deployment", workload: deployment, image: "app:deploy" },
    {
      name: "extensions Deployment",
      workload: { ...deployment, apiVersion: "extensions/v1beta1" },
      image: "app:deploy",
    },
    { name: "ReplicaSet", workload: rs, image: "app:rs" },
    { name: "StatefulSet", workload: sts, image: "app:sts" },
    { name: "DaemonSet", workload: ds, image: "app:ds" },
    { name: "Job", workload: job, image: "app:job" },
    { name: "CronJob", workload: cronJob, image: "app:cron" },
    { name: "Rollout", workload: rollout, image: "app:rollout" },
    { name: "Rollout with workloadRef", workload: refRollout, image: "app:ref" },
    { name: "ReplicationController", workload: rc, image: "app:rc" },
    { name: "Pod", workload: pod(), image: "app:pod" },
    {
      name: "a Deployment of another group",
      workload: { ...deployment, apiVersion: "example.com/v1" },
      image: undefined,
    },
    { name: "a ConfigMap", workload: obj("v1", "ConfigMap", "c", { data: {} }), image: undefined },
    { name: "Deployment without spec", workload: obj("apps/v1", "Deployment", "x"), image: undefined },
    {
      name: "Deployment with a list template",
      workload: obj("apps/v1", "Deployment", "x", { spec: { template: [] } }),
      image: undefined,
    },
    { name: "CronJob without jobTemplate", workload: obj("batch/v1", "CronJob", "x", { spec: {} }), image: undefined },
  ];
  for (const c of cases) t.equal(podTemplateOf(c.workload, everything)?.spec.containers[0]?.image, c.image, c.name);
  t.equal(podTemplateOf(refRollout), undefined, "workloadRef without a lookup");
  t.equal(podTemplateOf(badRefRollout(), everything), undefined, "workloadRef to another kind");
  const tpl = podTemplateOf(deployment);
  t.equal(tpl, (deployment.spec as { template: unknown }).template, "by reference");
  t.ok(WORKLOAD_KINDS.includes("Rollout") && WORKLOAD_KINDS.includes("CronJob"));
  t.ok(isWorkload({ apiVersion: "argoproj.io/v1alpha1", kind: "Rollout" }));
  t.notOk(isWorkload({ apiVersion: "v1", kind: "Deployment" }));
  t.notOk(isWorkload({ apiVersion: "v1", kind: "toString" }));
});

function badRefRollout(): KubeObject {
  return obj("argoproj.io/v1alpha1", "Rollout", "r", { spec: { workloadRef: { kind: "StatefulSet", name: "db" } } });
}
