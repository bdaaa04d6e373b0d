// The reconciler's own pods are never application pods: a Migrator whose spec.labels (added to its
// migration Job's pods) match its own spec.selector still migrates once and keeps the app's digest.
//
// For that to be observable the Job pod must look like a newer application pod running another
// digest: the migrations run from their own image (upstream's spec.image), pinned by its own digest,
// and the application is a StatefulSet: its pods carry no Deployment revision, so pods are ordered by
// creation time (one-second resolution), then by name — and the Job pod's name (`db-…`) sorts after
// the app pod's (`api-0`), so the Job pod always counts as the newer. A live Job pod taken for an
// application pod would make the migrations image's digest the wanted one: a second Job, and the
// first deleted as stale. On the real node the Job's pod really runs (held by a file in the test's
// host directory) while the reconciler revisits the Migrator.
import fs from "node:fs";
import t from "tap";
import { CONDITION_READY, LABELS } from "@digest-migrations/shared";
import type { KubeObject, Pod } from "@digest-migrations/shared";
import { statefulSet } from "../harness/objects.ts";
import { waitFor } from "../kit/wait.ts";
import {
  appContainer,
  appImage,
  appPodSpec,
  describeMigrator,
  jobsStarted,
  observe,
  reconcilerEnv,
  record,
  runningImages,
  unmigratedStarts,
} from "./setup.ts";

const MIGRATIONS_REPOSITORY = "app-migrations";

t.test("a Migrator whose Job pods match its own selector", async (t) => {
  const env = await reconcilerEnv(t);
  const jobs = await record<KubeObject>(t, env, `/apis/batch/v1/namespaces/${env.namespace}/jobs`);
  const probes = await record<Pod>(t, env, `/api/v1/namespaces/${env.namespace}/pods`, `${LABELS.role}=probe`);
  const hold = env.flag("go");
  const d1 = await env.push(appImage("v1"));
  const migrations = await env.push(appImage("m1", { HOLD_FILE: hold }), "v1", MIGRATIONS_REPOSITORY);
  await env.migrator("db", {
    selector: { matchLabels: { app: "api" } },
    labels: { app: "api" },
    image: `${env.images.repository(MIGRATIONS_REPOSITORY)}@${migrations}`,
    command: ["migrate"],
  });
  await env.kube.createObject(
    statefulSet(env.namespace, "api", {
      metadata: { labels: { app: "api" } },
      spec: appPodSpec(env, { initContainers: [env.waiter("db")], containers: [appContainer(env)] }),
    }),
  );

  // The migration is held: its pod is live, labelled app=api, and newer than the application's pod.
  const jobPod = await waitFor(
    async () =>
      (await env.pods(`${LABELS.role}=migration`)).find(
        (p) => p.status?.phase === "Running" && p.metadata.labels?.["app"] === "api",
      ),
    { what: "the migration Job's pod to run", timeoutMs: 120_000, describe: () => describeMigrator(env, "db") },
  );
  const selected = await env.pods("app=api");
  t.equal(selected.length, 2, "the app pod and the Job pod both match spec.selector");
  const appPod = selected.find((p) => p.metadata.name === "api-0");
  t.ok(
    Date.parse(appPod?.metadata.creationTimestamp ?? "") <= Date.parse(jobPod.metadata.creationTimestamp ?? "") &&
      (jobPod.metadata.name ?? "") > "api-0",
    "the Job pod orders as the newer pod (creation time, then name)",
  );
  t.equal(await jobsStarted(env), 1, "one Job started");
  const wanted = new Set<string | undefined>();
  const jobPodPhases = new Set<string | undefined>();
  const during = await observe(env, "db", 6000, async () => {
    wanted.add((await env.getMigrator("db"))?.status?.currentDigest);
    jobPodPhases.add(
      (await env.pods(`${LABELS.role}=migration`)).find((p) => p.metadata.uid === jobPod.metadata.uid)?.status?.phase,
    );
  });
  t.ok(during >= 4, `the window spans several revisits of the Migrator (${during} reconciles)`);
  t.same([...jobPodPhases], ["Running"], "the Job pod ran throughout the window");
  t.same([...wanted], [d1], "the app's digest stays wanted while the Job pod runs");
  t.equal(await jobsStarted(env), 1, "no second Job while the first runs");
  t.equal(jobs.seen.size, 1, "no other Job ever appeared");

  fs.writeFileSync(hold, "");
  const ready = await env.waitReady("db", d1);
  t.equal(ready.status?.lastSuccessfulMigration, d1, "the app's digest is recorded");
  await waitFor(async () => runningImages(await env.pods("app=api")).some((id) => id.endsWith(`@${d1}`)), {
    what: "the app pod to be released",
    timeoutMs: 120_000,
    describe: () => describeMigrator(env, "db"),
  });
  const probesBefore = probes.seen.size;
  t.equal(probesBefore, 1, "one probe, for the app pod");

  // After the migration, over several revisits: nothing more is started and the digest stays the app's.
  const states = new Set<string>();
  const after = await observe(env, "db", 6000, async () => {
    const m = await env.getMigrator("db");
    const condition = m?.status?.conditions?.find((c) => c.type === CONDITION_READY);
    states.add(JSON.stringify([m?.status?.currentDigest, m?.status?.lastSuccessfulMigration, condition?.reason]));
  });
  t.ok(after >= 4, `the window spans several revisits of the Migrator (${after} reconciles)`);
  t.same([...states], [JSON.stringify([d1, d1, "Succeeded"])], "Succeeded with the app's digest throughout");
  t.equal(await jobsStarted(env), 1, "exactly one Job was ever created");
  t.equal(jobs.seen.size, 1, "no other Job ever appeared");
  t.equal(probes.seen.size, probesBefore, "no probe appeared after the migration");
  t.same(
    (await env.applied()).map((r) => [r.version, r.digest]),
    [["m1", d1]],
    "one migration, keyed on the app's digest",
  );
  t.same(await unmigratedStarts(env, "api-", [d1]), [], "the app container started on the migrated digest only");
});
