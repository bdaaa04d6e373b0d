// A failing migration: the Migrator says Failed (condition and Event), pods stay gated, the Job is
// not recreated in a loop, and the retry annotation reruns the same digest.
import t from "tap";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ANNOTATIONS } from "@digest-migrations/shared";
import type { KubeObject } from "@digest-migrations/shared";
import { deployment } from "../harness/objects.ts";
import { waitFor } from "../kit/wait.ts";
import {
  APP_IMAGE,
  appContainer,
  appImage,
  describeMigrator,
  jobsStarted,
  observe,
  reconcilerEnv,
  record,
  runningImages,
} from "./setup.ts";

t.test("a failed migration stays failed until retried", async (t) => {
  // Every Migrator is revisited each second (resync), so the observation windows below span several
  // full reconciles: a retry storm would show within them.
  const env = await reconcilerEnv(t, { controller: { resyncSeconds: 1 } });
  const jobs = await record<KubeObject>(t, env, `/apis/batch/v1/namespaces/${env.namespace}/jobs`);
  const dir = mkdtempSync(path.join(tmpdir(), "dm-fail-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const failFile = path.join(dir, "fail");
  writeFileSync(failFile, "");
  const d1 = env.registry.push(APP_IMAGE, "latest", appImage("v1", { FAIL_FILE: failFile }));
  await env.migrator("db", { selector: { matchLabels: { app: "web" } }, command: ["migrate"] });
  await env.kube.createObject(
    deployment(env.namespace, "web", [appContainer(env)], { replicas: 1, initContainers: [env.waiter("db")] }),
  );
  const failed = await env.waitReason("db", "Failed", 90_000);
  t.equal(failed.status?.currentDigest, d1);
  t.notOk(failed.status?.lastSuccessfulMigration, "nothing recorded");
  t.ok((await env.waitEvents("Failed")).length >= 1, "a Warning Event");
  t.equal(await jobsStarted(env), 1, "one Job started");
  const [failedJob] = jobs.all();
  t.equal(jobs.seen.size, 1, "one Job seen");

  // No retry storm: over several revisits, still the one failed Job (no new one, none replaced), still gated.
  const liveJobs = new Set<string>();
  let released = 0;
  const visits = await observe(6000, async () => {
    for (const job of await env.jobs()) liveJobs.add(job.metadata.uid ?? "");
    released += runningImages(await env.pods("app=web")).length;
  });
  t.ok(visits >= 4, `the window spans several revisits of the Migrator (${visits} reconciles)`);
  t.equal(await jobsStarted(env), 1, "no new Job was created");
  t.same([...jobs.seen.keys()], [failedJob?.metadata.uid], "no other Job ever appeared");
  t.same([...liveJobs], [failedJob?.metadata.uid], "the failed Job stays, for its logs");
  t.equal(released, 0, "pods stay gated");
  const stillFailed = await env.getMigrator("db");
  t.equal(stillFailed?.status?.conditions?.find((c) => c.type === "Ready")?.reason, "Failed", "still Failed");

  // Fix the cause and ask for a retry of the same digest: exactly one more Job.
  rmSync(failFile);
  await env.kube.patchObject("migrations.coderanger.net/v1beta1", "Migrator", env.namespace, "db", {
    metadata: { annotations: { [ANNOTATIONS.retry]: "1" } },
  });
  await env.waitReady("db", d1, 90_000);
  t.equal(await jobsStarted(env), 2, "exactly one retry");
  await waitFor(async () => runningImages(await env.pods("app=web")).length === 1, {
    what: "the pod to be released",
    timeoutMs: 60_000,
    describe: () => describeMigrator(env, "db"),
  });
  // The annotation stays set: revisits after the success must not run the migration again.
  const after = await observe(4000, async () => {});
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
});
