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
  t.same(jobView(job), { name: job.metadata.name, digest: D, state: "active", image: `${IMAGE.tag}@${D}` });
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
  t.equal(jobView({ ...job, status: { succeeded: 1, completionTime: "t" } }).completionTime, "t");
  t.equal(jobView(builtJob(D, "failed", { retryHandled: "3" })).retry, "3", "the retry value it answers");
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
