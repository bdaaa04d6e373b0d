// A failing migration: the Migrator says Failed (condition and Event), pods stay gated, the Job is
// not recreated in a loop, and the retry annotation reruns the same digest. On the real node the
// migration fails in its Job's pod while a file in the test's host directory exists; the gated pod's
// app container is never started by containerd until the retry has succeeded.
import fs from "node:fs";
import t from "tap";
import { ANNOTATIONS, MIGRATION_CONTAINER_NAME } from "@digest-migrations/shared";
import type { KubeObject } from "@digest-migrations/shared";
import { waitFor } from "../kit/wait.ts";
import {
  appDeployment,
  appImage,
  describeMigrator,
  jobsStarted,
  observe,
  reconcilerEnv,
  record,
  runningImages,
  unmigratedStarts,
} from "./setup.ts";

t.test("a failed migration stays failed until retried", async (t) => {
  const env = await reconcilerEnv(t);
  const jobs = await record<KubeObject>(t, env, `/apis/batch/v1/namespaces/${env.namespace}/jobs`);
  const failFile = env.flag("fail");
  fs.writeFileSync(failFile, "");
  const d1 = await env.push(appImage("v1", { FAIL_FILE: failFile }));
  await env.migrator("db", { selector: { matchLabels: { app: "web" } }, command: ["migrate"] });
  await env.kube.createObject(appDeployment(env, "web", { migrator: "db" }));
  const failed = await env.waitReason("db", "Failed");
  t.equal(failed.status?.currentDigest, d1);
  t.notOk(failed.status?.lastSuccessfulMigration, "nothing recorded");
  t.ok((await env.waitEvents("Failed")).length >= 1, "a Warning Event");
  t.equal(await jobsStarted(env), 1, "one Job started");
  const [failedJob] = jobs.all();
  t.equal(jobs.seen.size, 1, "one Job seen");
  const [jobPod] = await env.pods(`job-name=${failedJob?.metadata.name}`);
  t.match(
    await env.logs(jobPod?.metadata.name ?? "", MIGRATION_CONTAINER_NAME),
    /migration v1 failed on purpose/,
    "the Job's pod failed",
  );

  // No retry storm: over several revisits, still the one failed Job (no new one, none replaced), still gated.
  const liveJobs = new Set<string>();
  let released = 0;
  const visits = await observe(env, "db", 6000, async () => {
    for (const job of await env.jobs()) liveJobs.add(job.metadata.uid ?? "");
    released += runningImages(await env.pods("app=web")).length;
  });
  t.ok(visits >= 4, `the window spans several revisits of the Migrator (${visits} reconciles)`);
  t.equal(await jobsStarted(env), 1, "no new Job was created");
  t.same([...jobs.seen.keys()], [failedJob?.metadata.uid], "no other Job ever appeared");
  t.same([...liveJobs], [failedJob?.metadata.uid], "the failed Job stays, for its logs");
  t.equal(released, 0, "pods stay gated");
  t.same(await unmigratedStarts(env, "web-", []), [], "containerd never started the gated app container");
  const stillFailed = await env.getMigrator("db");
  t.equal(stillFailed?.status?.conditions?.find((c) => c.type === "Ready")?.reason, "Failed", "still Failed");

  // Fix the cause and ask for a retry of the same digest: exactly one more Job.
  fs.rmSync(failFile);
  await env.kube.patchObject("migrations.coderanger.net/v1beta1", "Migrator", env.namespace, "db", {
    metadata: { annotations: { [ANNOTATIONS.retry]: "1" } },
  });
  await env.waitReady("db", d1);
  t.equal(await jobsStarted(env), 2, "exactly one retry");
  await waitFor(async () => runningImages(await env.pods("app=web")).length === 1, {
    what: "the pod to be released",
    timeoutMs: 120_000,
    describe: () => describeMigrator(env, "db"),
  });
  // The annotation stays set: revisits after the success must not run the migration again.
  const after = await observe(env, "db", 4000, async () => {});
  t.ok(after >= 3, `the window spans several revisits of the Migrator (${after} reconciles)`);
  t.equal(await jobsStarted(env), 2, "the retry ran once");
  const retried = jobs.all().filter((j) => j.metadata.uid !== failedJob?.metadata.uid);
  t.equal(retried.length, 1, "one Job for the retry");
  t.equal(retried[0]?.metadata.name, failedJob?.metadata.name, "the same Job name: the same (Migrator, digest)");
  t.ok(jobs.deleted.has(failedJob?.metadata.uid ?? ""), "the failed Job was replaced");
  t.same(
    (await env.applied()).map((r) => r.version),
    ["v1"],
  );
  t.same(await unmigratedStarts(env, "web-", [d1]), [], "the app container started only on the migrated digest");
});
