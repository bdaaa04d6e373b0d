// The digest protocol end to end on a real control plane: a Deployment with a mutable tag, a
// Migrator, the node emulator pulling from a registry whose `latest` moves, PostgreSQL.
import t from "tap";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { migrationsStarted, probeDuration } from "../../reconciler/src/metrics.ts";
import { ANNOTATIONS, pinnedDigest } from "@digest-migrations/shared";
import type { KubeObject, Pod } from "@digest-migrations/shared";
import { deployment } from "../harness/objects.ts";
import { delay, waitFor } from "../harness/wait.ts";
import { APP_IMAGE, appContainer, appImage, describeMigrator, reconcilerEnv, runningImages } from "./setup.ts";
import type { ReconcilerEnv } from "./setup.ts";

const SELECTOR = "app=web";

function web(env: ReconcilerEnv, replicas = 2): KubeObject {
  return deployment(env.namespace, "web", [appContainer(env)], { replicas, initContainers: [env.waiter("db")] });
}

async function restart(env: ReconcilerEnv, value: string): Promise<void> {
  await env.kube.patchObject("apps/v1", "Deployment", env.namespace, "web", {
    spec: { template: { metadata: { annotations: { "e2e/restartedAt": value } } } },
  });
}

/** All live web pods run `digest` (status imageID) with the image pinned to it, and the rollout is done. */
async function waitRunning(env: ReconcilerEnv, digest: string, replicas = 2): Promise<Pod[]> {
  return waitFor(
    async () => {
      const pods = (await env.pods(SELECTOR)).filter((p) => p.metadata.deletionTimestamp === undefined);
      if (pods.length !== replicas) return undefined;
      const images = runningImages(pods);
      const pinned = pods.every((p) => pinnedDigest(p.spec.containers[0]?.image) === digest);
      return images.length === replicas && images.every((id) => id.endsWith(`@${digest}`)) && pinned ? pods : undefined;
    },
    { what: `web pods to run ${digest}`, timeoutMs: 90_000, describe: () => describeMigrator(env, "db") },
  );
}

t.test("first rollout, then a new push of the same tag", async (t) => {
  const env = await reconcilerEnv(t);
  const d1 = env.registry.push(APP_IMAGE, "latest", appImage("v1"));
  await env.migrator("db", { selector: { matchLabels: { app: "web" } }, command: ["migrate"] });
  await env.kube.createObject(web(env));

  // Gated pods → probe → one Job pinned to D1 → recorded → released.
  const m1 = await env.waitReady("db", d1, 90_000);
  t.equal(m1.status?.lastSuccessfulMigration, d1, "lastSuccessfulMigration is the digest");
  t.equal(m1.status?.currentDigest, d1);
  const jobs1 = await env.jobs();
  t.equal(jobs1.length, 1, "one Job");
  const job1 = jobs1[0]!;
  const spec1 = (job1.spec as { template: { spec: Pod["spec"] } }).template.spec;
  t.equal(spec1.containers[0]?.image, `${APP_IMAGE}:latest@${d1}`, "the Job runs the pinned digest");
  t.equal(job1.metadata.annotations?.[ANNOTATIONS.digest], d1, "the Job is annotated with the digest");
  await waitRunning(env, d1);
  // The probe that resolved D1 is removed once its pods are pinned, and its lifetime recorded.
  const resolvedProbes = await waitFor(
    async () => {
      const metric = await probeDuration.get();
      const count = metric.values.find(
        (v) => v.metricName === "digest_migrations_probe_duration_seconds_count" && v.labels.result === "resolved",
      );
      return count !== undefined && count.value >= 1 ? count.value : undefined;
    },
    { what: "a resolved probe in digest_migrations_probe_duration_seconds", timeoutMs: 30_000 },
  );
  t.ok(resolvedProbes >= 1, "probe duration observed with result=resolved");
  t.same(
    (await env.applied()).map((r) => r.version),
    ["v1"],
    "the migration ran exactly once",
  );
  const probes = await env.pods("migrations.coderanger.net/role=probe");
  await waitFor(async () => (await env.pods("migrations.coderanger.net/role=probe")).length === 0, {
    what: "probe pods to be deleted after use",
    timeoutMs: 30_000,
  });
  t.ok(probes.length <= 1, "at most one probe per node");

  // CI pushes a new `latest`; the Deployment is restarted: exactly one more Job, for D2.
  const d2 = env.registry.push(APP_IMAGE, "latest", appImage("v2"));
  t.not(d2, d1);
  await restart(env, "1");
  const m2 = await env.waitReady("db", d2, 90_000);
  t.equal(m2.status?.lastSuccessfulMigration, d2);
  t.same(
    m2.status?.migratedDigests?.map((r) => r.digest),
    [d2, d1],
    "history, newest first",
  );
  await waitRunning(env, d2);
  t.same(
    (await env.applied()).map((r) => r.version),
    ["v1", "v2"],
    "one more migration, for D2",
  );
  const jobs2 = await waitFor(
    async () => {
      const jobs = await env.jobs();
      return jobs.length === 1 ? jobs : undefined;
    },
    { what: "the stale D1 Job to be deleted", timeoutMs: 30_000 },
  );
  t.equal(jobs2[0]?.metadata.annotations?.[ANNOTATIONS.digest], d2, "the D2 Job stays for its logs");
  t.ok((await env.waitEvents("Succeeded")).length >= 1, "an Event for the transition");
});

/** Migration Jobs the controller created for Migrator `db` of this test's namespace. */
async function started(env: ReconcilerEnv): Promise<number> {
  const metric = await migrationsStarted.get();
  return metric.values.find((v) => v.labels.namespace === env.namespace && v.labels.migrator === "db")?.value ?? 0;
}

t.test("a moving tag during a migration, old and new pods together, and a rollback", async (t) => {
  const env = await reconcilerEnv(t);
  const hold = path.join(mkdtempSync(path.join(tmpdir(), "dm-hold-")), "go");
  t.teardown(() => rmSync(path.dirname(hold), { recursive: true, force: true }));
  const d1 = env.registry.push(APP_IMAGE, "latest", appImage("v1"));
  await env.migrator("db", { selector: { matchLabels: { app: "web" } }, command: ["migrate"] });
  await env.kube.createObject(web(env));
  await env.waitReady("db", d1, 90_000);
  await waitRunning(env, d1);
  t.equal(await started(env), 1);

  // D2's migration is held, so old D1 pods and gated D2 pods live side by side.
  const d2 = env.registry.push(APP_IMAGE, "latest", appImage("v2", { HOLD_FILE: hold }));
  await restart(env, "1");
  await waitFor(
    async () => {
      const m = await env.getMigrator("db");
      return m?.status?.currentDigest === d2 && m.status.conditions?.some((c) => c.reason === "Running");
    },
    { what: "the D2 migration to run", timeoutMs: 60_000, describe: () => describeMigrator(env, "db") },
  );
  // The tag moves again while D2 migrates.
  const d3 = env.registry.push(APP_IMAGE, "latest", appImage("v3"));
  // A bounded observation window: the wanted digest never flaps back to D1 and no other Job starts.
  const windowEnd = Date.now() + 3000;
  while (Date.now() < windowEnd) {
    const m = await env.getMigrator("db");
    t.equal(m?.status?.currentDigest, d2, "the newest pods' digest stays wanted");
    const jobs = await env.jobs();
    t.ok(
      jobs.every((j) => j.metadata.annotations?.[ANNOTATIONS.digest] !== d3),
      "no Job for D3 yet",
    );
    await delay(250);
  }
  t.equal(await started(env), 2, "exactly one Job for D2");
  writeFileSync(hold, "");
  await env.waitReady("db", d2, 90_000);
  // The pod released first was pinned to D2 before the tag moved, so it runs D2. The rollout's
  // next pod is created after the move: its node resolves D3, which is migrated after D2 and
  // before that pod starts — every pod runs a migrated digest, never an unmigrated one.
  const mixed = await waitFor(
    async () => {
      const pods = (await env.pods(SELECTOR)).filter((p) => p.metadata.deletionTimestamp === undefined);
      const images = runningImages(pods);
      const ok = pods.length === 2 && images.length === 2 && images.every((id) => id.endsWith(d2) || id.endsWith(d3));
      return ok ? images : undefined;
    },
    { what: "the D2 rollout to finish", timeoutMs: 90_000, describe: () => describeMigrator(env, "db") },
  );
  t.ok(
    mixed.some((id) => id.endsWith(d2)),
    "the pod released during the move runs D2, as pinned",
  );

  // D3 is handled after D2: restarted pods resolve the tag's new digest; one Job for D3 in all.
  await restart(env, "2");
  await env.waitReady("db", d3, 90_000);
  await waitRunning(env, d3);
  t.equal(await started(env), 3, "one Job per digest");
  t.same(
    (await env.applied()).map((r) => r.version),
    ["v1", "v2", "v3"],
    "D3 migrated after D2",
  );

  // Rollback: `latest` points at D1 again; D1 is in the history, so no Job and immediate release.
  env.registry.tag(APP_IMAGE, "latest", d1);
  await restart(env, "3");
  await waitRunning(env, d1);
  t.equal(await started(env), 3, "no Job for a rollback");
  t.same(
    (await env.applied()).map((r) => r.version),
    ["v1", "v2", "v3"],
    "each digest migrated exactly once",
  );
  const m = await env.waitReason("db", "Succeeded");
  t.equal(m.status?.currentDigest, d1);
});
