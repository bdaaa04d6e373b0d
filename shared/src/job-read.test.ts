// Reading a migration Job back (jobView, jobState) and telling the Migrator's own objects (isOwnedBy).
import t from "tap";
import { buildMigrationJob, isOwnedBy, jobState, jobView } from "./job.ts";
import type { KubeObject } from "./k8s.ts";
import { job as builtJob, migrator } from "./plan-builders.ts";
import { IMAGE } from "./testdata/kubelet-statuses.ts";

const D = `sha256:${"0123456789abcdef".repeat(4)}`;
const template = { metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "app", image: IMAGE.tag }] } };
const build = (): KubeObject => buildMigrationJob({ migrator: migrator(), template, digest: D }).job;

t.test("jobView and jobState read a Job back", async (t) => {
  const job = build();
  t.same(jobView(job), {
    name: job.metadata.name,
    digest: D,
    state: "active",
    image: `${IMAGE.tag}@${D}`,
    backoffLimit: 0,
  });
  const cases: [Record<string, unknown>, string][] = [
    [{}, "active"],
    [{ active: 1 }, "active"],
    [{ succeeded: 1 }, "succeeded"],
    [{ conditions: [{ type: "Complete", status: "True" }] }, "succeeded"],
    [{ conditions: [{ type: "Failed", status: "True" }] }, "failed"],
    [{ failed: 1 }, "failed"],
    [{ conditions: [{ type: "Failed", status: "False" }] }, "active"],
  ];
  for (const [status, state] of cases) t.equal(jobState({ ...job, status }), state, JSON.stringify(status));
  // With spec.backoffLimit the Job controller retries a failed pod: failed only past the limit, or by condition.
  const retrying = { ...job, spec: { ...(job.spec as object), backoffLimit: 2 } };
  t.equal(jobState({ ...retrying, status: { failed: 2, active: 1 } }), "active", "2 failures of 3 allowed: retrying");
  t.equal(jobState({ ...retrying, status: { failed: 3 } }), "failed", "past the limit");
  t.equal(
    jobState({ ...retrying, status: { failed: 1, conditions: [{ type: "Failed", status: "True" }] } }),
    "failed",
    "the Failed condition decides (a deadline)",
  );
  t.equal(jobView({ ...job, status: { succeeded: 1, completionTime: "t" } }).completionTime, "t");
  t.equal(jobView(builtJob(D, "failed", { retryHandled: "3" })).retry, "3", "the retry value it answers");
});

t.test("jobView says why a Job failed, and with which deadline and backoffLimit", async (t) => {
  const job = buildMigrationJob({
    migrator: migrator({ spec: { activeDeadlineSeconds: 600, backoffLimit: 1 } }),
    template,
    digest: D,
  }).job;
  const failed = {
    ...job,
    status: {
      failed: 1,
      conditions: [
        {
          type: "Failed",
          status: "True",
          reason: "DeadlineExceeded",
          message: "Job was active longer than specified deadline",
        },
      ],
    },
  };
  t.match(jobView(failed), {
    state: "failed",
    activeDeadlineSeconds: 600,
    backoffLimit: 1,
    failedPods: 1,
    failure: { reason: "DeadlineExceeded", message: "Job was active longer than specified deadline" },
  });
  t.equal(jobView({ ...job, status: { failed: 1, active: 1 } }).failure, undefined, "retrying: no failure yet");
});

t.test("isOwnedBy: the migrator label and a controller reference to the Migrator's uid", async (t) => {
  const m = migrator();
  const job = build();
  t.ok(isOwnedBy(job, m));
  t.notOk(
    isOwnedBy(job, { ...m, metadata: { ...m.metadata, uid: "another" } }),
    "a recreated Migrator of the same name",
  );
  t.notOk(isOwnedBy({ ...job, metadata: { ...job.metadata, labels: {} } }, m), "without the label");
});
