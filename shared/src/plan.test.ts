// plan(): the whole of one reconcile decided — a deleted or invalid Migrator, no pods, the Job decision
// (create, wait, record, retry, stale), the Job's template and warning, the status and its Events. The
// pods, probes and pins are plan-pods.test.ts; the invariants over arbitrary snapshots, plan.property.test.ts.
import t from "tap";
import type { Pod } from "./k8s.ts";
import { REASONS } from "./migrator.ts";
import { SAFETY_REQUEUE_MS, plan } from "./plan.ts";
import type { Plan, Snapshot } from "./plan.ts";
import { D1, D2, NOW, appPod, at, job, migrated, migrator, owners, snapshot } from "./plan-builders.ts";
import * as kubelet from "./testdata/kubelet-statuses.ts";

const { IMAGE } = kubelet;
const reasonOf = (p: Plan): string => p.condition.reason;

t.test("nothing to do for a Migrator being deleted", async (t) => {
  const p = plan(snapshot({ migrator: migrator({ deleted: true }), pods: [appPod("web-a")] }), NOW);
  t.same([p.pins, p.createProbes, p.deleteProbes, p.staleJobs, p.events], [[], [], [], [], []]);
  t.equal(p.job.kind, "none");
  t.equal(p.status, undefined);
  t.equal(p.requeueAfterMs, undefined);
});

t.test("an invalid spec: InvalidSpec naming the field, and nothing else", async (t) => {
  const bad = migrator({ spec: { selector: { matchExpressions: [{ key: "app", operator: "In", values: [] }] } } });
  const p = plan(snapshot({ migrator: bad, pods: [appPod("web-a")] }), NOW);
  t.equal(reasonOf(p), REASONS.InvalidSpec);
  t.match(p.condition.message, /spec\.selector\.matchExpressions\[0\]\.values/);
  t.same(p.createProbes, []);
  t.same(
    p.events.map((e) => [e.type, e.reason]),
    [["Warning", REASONS.InvalidSpec]],
  );
});

t.test("no selected pods: WaitingForPods, or Succeeded with the last digest", async (t) => {
  t.equal(reasonOf(plan(snapshot(), NOW)), REASONS.WaitingForPods);
  const other = appPod("other", { labels: { app: "other" } });
  t.equal(reasonOf(plan(snapshot({ pods: [other] }), NOW)), REASONS.WaitingForPods, "unselected pods do not count");
  const done = appPod("old", { status: { ...kubelet.RUNNING_PINNED, phase: "Succeeded" } });
  t.equal(reasonOf(plan(snapshot({ pods: [done] }), NOW)), REASONS.WaitingForPods, "finished pods do not count");
  const p = plan(snapshot({ migrator: migrator({ status: migrated(D1) }) }), NOW);
  t.equal(reasonOf(p), REASONS.Succeeded);
  t.equal(p.condition.ready, true);
  t.equal(p.requeueAfterMs, undefined, "nothing gated: visited again on events only");
  const gated = plan(snapshot({ migrator: migrator({ status: migrated(D1) }), pods: [appPod("web-a")] }), NOW);
  t.equal(gated.requeueAfterMs, SAFETY_REQUEUE_MS, "a gated pod: visited again within the safety period");
});

t.test("spec.container missing from the pods: InvalidSpec naming the pod", async (t) => {
  const p = plan(snapshot({ migrator: migrator({ spec: { container: "worker" } }), pods: [appPod("web-a")] }), NOW);
  t.equal(reasonOf(p), REASONS.InvalidSpec);
  t.match(p.condition.message, /pod web-a: container "worker" \(spec\.container\) is not in the pod template/);
});

const pinnedPod = (name: string, digest: string, o: Parameters<typeof appPod>[1] = {}): Pod =>
  appPod(name, { image: `${IMAGE.tag}@${digest}`, ...o });

t.test("the Job decision", async (t) => {
  const cases: { name: string; snapshot: Snapshot; job: Plan["job"]["kind"]; reason: string; stale?: string[] }[] = [
    {
      name: "a new digest: its Job",
      snapshot: snapshot({ pods: [pinnedPod("a", D1)] }),
      job: "create",
      reason: REASONS.Running,
    },
    {
      name: "a migrated digest (rollback): no Job",
      snapshot: snapshot({ migrator: migrator({ status: migrated(D2, D1) }), pods: [pinnedPod("a", D1)] }),
      job: "none",
      reason: REASONS.Succeeded,
    },
    {
      name: "its Job runs: wait",
      snapshot: snapshot({ pods: [pinnedPod("a", D1)], jobs: [job(D1, "active")] }),
      job: "none",
      reason: REASONS.Running,
    },
    {
      name: "another digest's Job runs: wait for it",
      snapshot: snapshot({ pods: [pinnedPod("a", D2)], jobs: [job(D1, "active")] }),
      job: "none",
      reason: REASONS.Running,
    },
    {
      name: "succeeded, not recorded: record first, delete nothing",
      snapshot: snapshot({ pods: [pinnedPod("a", D2)], jobs: [job(D2, "succeeded"), job(D1, "failed")] }),
      job: "record",
      reason: REASONS.Succeeded,
      stale: [],
    },
    {
      name: "failed: Failed, no retry",
      snapshot: snapshot({ pods: [pinnedPod("a", D1)], jobs: [job(D1, "failed")] }),
      job: "none",
      reason: REASONS.Failed,
    },
    {
      name: "failed, new retry value: recreated",
      snapshot: snapshot({
        migrator: migrator({ retry: "2" }),
        pods: [pinnedPod("a", D1)],
        jobs: [job(D1, "failed", { retryHandled: "1" })],
      }),
      job: "create",
      reason: REASONS.Running,
    },
    {
      name: "finished Jobs of other digests: stale once recorded",
      snapshot: snapshot({
        migrator: migrator({ status: migrated(D2, D1) }),
        pods: [pinnedPod("a", D2)],
        jobs: [job(D1, "succeeded"), job(D2, "succeeded")],
      }),
      job: "none",
      reason: REASONS.Succeeded,
      stale: [job(D1, "succeeded").metadata.name!],
    },
  ];
  for (const c of cases) {
    const p = plan(c.snapshot, NOW);
    t.equal(p.job.kind, c.job, `${c.name}: job`);
    t.equal(reasonOf(p), c.reason, `${c.name}: reason`);
    if (c.stale !== undefined)
      t.same(
        p.staleJobs.map((s) => s.name),
        c.stale,
        `${c.name}: stale`,
      );
  }
});

t.test(
  "ttlSecondsAfterFinished: a recorded success is deleted once its time is up, never before it is recorded",
  async (t) => {
    // job() completes at 10:01:40, NOW is 10:10:00: 500 s later.
    const done = job(D1, "succeeded");
    const recorded = (ttl: number | undefined, defaults?: Snapshot["jobDefaults"]): Plan =>
      plan(
        snapshot({
          migrator: migrator({
            status: migrated(D1),
            ...(ttl === undefined ? {} : { spec: { ttlSecondsAfterFinished: ttl } }),
          }),
          pods: [pinnedPod("a", D1)],
          jobs: [done],
          ...(defaults ? { jobDefaults: defaults } : {}),
        }),
        NOW,
      );
    t.same(recorded(undefined).staleJobs, [], "no TTL: kept while its digest is wanted (as before)");
    const expired = recorded(300);
    t.same(
      expired.staleJobs.map((s) => s.name),
      [done.metadata.name],
      "500 s after it finished, TTL 300 s: deleted",
    );
    t.equal(reasonOf(expired), REASONS.Succeeded, "the Migrator still says Succeeded");
    t.equal(expired.condition.currentJob, done.metadata.name, "and names the Job that ran it");
    const early = recorded(520);
    t.same(early.staleJobs, [], "TTL 520 s: not yet");
    t.equal(early.requeueAfterMs, 20_500, "looked at again when it ends");
    t.same(recorded(undefined, { ttlSecondsAfterFinished: 300 }).staleJobs.length, 1, "the reconciler's default");
    t.same(recorded(900, { ttlSecondsAfterFinished: 300 }).staleJobs, [], "the Migrator's own value wins");

    const unrecorded = plan(
      snapshot({
        migrator: migrator({ spec: { ttlSecondsAfterFinished: 0 } }),
        pods: [pinnedPod("a", D1)],
        jobs: [done],
      }),
      NOW,
    );
    t.equal(unrecorded.job.kind, "record", "not recorded yet: recorded first");
    t.same(unrecorded.staleJobs, [], "and nothing deleted in the same plan");

    const failedJob = job(D1, "failed");
    const failed = plan(
      snapshot({
        migrator: migrator({ spec: { ttlSecondsAfterFinished: 0 } }),
        pods: [pinnedPod("a", D1)],
        jobs: [failedJob],
      }),
      NOW,
    );
    t.same(
      failed.staleJobs,
      [],
      "a failed Job of the wanted digest is kept: deleting it would start the migration again",
    );
    t.equal(failed.job.kind, "none");
  },
);

t.test("a Job stopped at its deadline: Failed naming the deadline, a Warning, no new Job", async (t) => {
  const m = migrator({ spec: { activeDeadlineSeconds: 30 } });
  const stopped = job(D1, "failed", { m });
  stopped.status = {
    failed: 1,
    conditions: [
      {
        type: "Failed",
        status: "True",
        reason: "DeadlineExceeded",
        message: "Job was active longer than specified deadline",
      },
    ],
  };
  const p = plan(snapshot({ migrator: m, pods: [pinnedPod("a", D1)], jobs: [stopped] }), NOW);
  t.equal(reasonOf(p), REASONS.Failed);
  t.match(p.condition.message, /ran past its deadline of 30 s \(spec\.activeDeadlineSeconds\)/);
  t.same(
    p.events.map((e) => [e.type, e.reason]),
    [["Warning", REASONS.Failed]],
  );
  t.equal(p.job.kind, "none", "no hot retry");
  t.same(p.staleJobs, []);
  t.same(p.pins, [], "its pods stay as they are: gated");
});

t.test("a new Job carries the Migrator's controls, else the reconciler's defaults", async (t) => {
  const specOf = (p: Plan): Record<string, unknown> =>
    p.job.kind === "create" ? (p.job.job.spec as Record<string, unknown>) : {};
  const own = plan(
    snapshot({
      migrator: migrator({ spec: { activeDeadlineSeconds: 60, backoffLimit: 1 } }),
      pods: [pinnedPod("a", D1)],
      jobDefaults: { activeDeadlineSeconds: 900 },
    }),
    NOW,
  );
  t.match(specOf(own), { activeDeadlineSeconds: 60, backoffLimit: 1 });
  const defaulted = plan(snapshot({ pods: [pinnedPod("a", D1)], jobDefaults: { activeDeadlineSeconds: 900 } }), NOW);
  t.match(specOf(defaulted), { activeDeadlineSeconds: 900, backoffLimit: 0 });
});

t.test("every bad Job control value: InvalidSpec naming the field, no Job", async (t) => {
  const bad: [Partial<Snapshot["migrator"]["spec"]>, RegExp][] = [
    [{ activeDeadlineSeconds: 0 }, /spec\.activeDeadlineSeconds: must be a whole number/],
    [{ backoffLimit: -1 }, /spec\.backoffLimit: must be a whole number/],
    [{ ttlSecondsAfterFinished: 1.5 }, /spec\.ttlSecondsAfterFinished: must be a whole number/],
    [{ probePullTimeoutSeconds: 0 }, /spec\.probePullTimeoutSeconds: must be a whole number/],
    [
      { resources: { requests: { memory: "2Gi" }, limits: { memory: "1Gi" } } },
      /spec\.resources\.requests\.memory: "2Gi" is more than/,
    ],
  ];
  for (const [spec, message] of bad) {
    const p = plan(snapshot({ migrator: migrator({ spec }), pods: [pinnedPod("a", D1)] }), NOW);
    t.equal(reasonOf(p), REASONS.InvalidSpec, JSON.stringify(spec));
    t.match(p.condition.message, message, JSON.stringify(spec));
    t.match(p.condition.message, /^Migrator shop\/web /, "names the Migrator");
    t.equal(p.job.kind, "none");
  }
});

t.test("creating a Job: from the newest pod running the digest, pinned, retry noted", async (t) => {
  const older = pinnedPod("a", D1, { revision: 1, created: 9 });
  const newer = pinnedPod("b", D1, { revision: 2, created: 1 });
  const p = plan(
    snapshot({
      migrator: migrator({ retry: "2" }),
      pods: [older, newer],
      jobs: [job(D1, "failed", { retryHandled: "1" })],
    }),
    NOW,
  );
  if (p.job.kind !== "create") return t.fail(`expected create, got ${p.job.kind}`);
  t.equal(p.job.template, "Deployment/web");
  t.equal(p.job.digest, D1);
  t.same(
    p.job.replaces,
    { name: `web-${D1.slice(7, 17)}`, uid: `uid-web-${D1.slice(7, 17)}` },
    "the failed Job goes first",
  );
  t.equal(p.job.job.metadata.annotations?.["migrations.coderanger.net/retry-handled"], "2");
  t.match(p.job.job, { spec: { template: { spec: { containers: [{ image: `${IMAGE.tag}@${D1}` }] } } } });
  t.equal(p.job.warning, undefined, "the app's own image: no warning");
  t.equal(p.condition.currentDigest, D1);
  t.equal(p.condition.currentImage, `${IMAGE.tag}@${D1}`);
});

t.test("creating a Job with spec.image of another repository by tag: the warning comes with it", async (t) => {
  const p = plan(
    snapshot({ migrator: migrator({ spec: { image: "registry.example/tools:v1" } }), pods: [pinnedPod("a", D1)] }),
    NOW,
  );
  if (p.job.kind !== "create") return t.fail(`expected create, got ${p.job.kind}`);
  t.match(p.job.warning, {
    type: "Warning",
    reason: "MigrationImageNotPinned",
    message: /runs spec.image registry.example\/tools:v1 as written/,
  });
});

t.test("no Job without a template: TemplateNotFound or InvalidSpec", async (t) => {
  const unmatched = plan(
    snapshot({
      migrator: migrator({ spec: { templateSelector: { matchLabels: { role: "tpl" } } } }),
      pods: [pinnedPod("a", D1)],
    }),
    NOW,
  );
  t.equal(unmatched.job.kind, "none");
  t.equal(reasonOf(unmatched), REASONS.TemplateNotFound);
  t.match(unmatched.condition.message, "matches spec.templateSelector");
  const orphan = plan(snapshot({ pods: [pinnedPod("a", D1)], owners: owners([]) }), NOW);
  t.equal(reasonOf(orphan), REASONS.TemplateNotFound);
  t.match(orphan.condition.message, /ReplicaSet shop\/web-1, which was not found/);
  const badImage = plan(
    snapshot({ migrator: migrator({ spec: { image: "Tools/Migrate" } }), pods: [pinnedPod("a", D1)] }),
    NOW,
  );
  t.equal(reasonOf(badImage), REASONS.InvalidSpec);
  t.match(badImage.condition.message, /invalid image reference "Tools\/Migrate"/);
});

t.test("recording a success: the status carries the record; look again at once", async (t) => {
  const p = plan(snapshot({ pods: [pinnedPod("a", D1)], jobs: [job(D1, "succeeded")] }), NOW);
  if (p.job.kind !== "record") return t.fail(`expected record, got ${p.job.kind}`);
  t.same(p.job.record, {
    digest: D1,
    image: `${IMAGE.tag}@${D1}`,
    job: `web-${D1.slice(7, 17)}`,
    completionTime: at(100),
  });
  t.equal(p.status?.lastSuccessfulMigration, D1);
  t.same(
    p.status?.migratedDigests?.map((r) => r.digest),
    [D1],
  );
  t.equal(p.requeueAfterMs, 0);
  t.same(p.staleJobs, []);
});

t.test("status and Events: written only when they change, an Event per new reason", async (t) => {
  const first = plan(snapshot({ pods: [pinnedPod("a", D1)] }), NOW);
  t.ok(first.status, "a first status");
  t.same(first.events, [{ type: "Normal", reason: REASONS.Running, message: first.condition.message }]);
  const again = plan(
    snapshot({ migrator: { ...migrator(), status: first.status! }, pods: [pinnedPod("a", D1)] }),
    new Date(NOW.getTime() + 60_000),
  );
  t.equal(again.status, undefined, "the same status: no write");
  t.same(again.events, [], "no Event");
  t.equal(again.condition.reason, REASONS.Running, "the condition is still known");
  const failed = plan(
    snapshot({
      migrator: { ...migrator(), status: first.status! },
      pods: [pinnedPod("a", D1)],
      jobs: [job(D1, "failed")],
    }),
    NOW,
  );
  t.same(
    failed.events.map((e) => [e.type, e.reason]),
    [["Warning", REASONS.Failed]],
  );
  t.match(failed.status?.conditions, [
    { type: "Ready", status: "False", reason: REASONS.Failed },
    { type: "MigrationsReady" },
  ]);
});
