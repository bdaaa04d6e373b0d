// The seed's story, end to end with real everything: git (the shop's manifests) → the plugin's
// generate in the plugin image → server-side apply → the reconciler installed with its Helm chart →
// the real node (kubelet, containerd, the registry CI pushes to) → PostgreSQL.
import t from "tap";
import type { Test } from "tap";
import { REASONS } from "@digest-migrations/shared";
import { MIGRATOR, buildVersions } from "../apps/shop/builds.ts";
import { historyProblems } from "../apps/shop/database.ts";
import { startShop } from "../pipeline/start-shop.ts";
import type { Shop } from "../pipeline/stack.ts";
import { waitFor } from "../kit/wait.ts";
import { timings } from "./report.ts";

/** Pods agree with the Migrator: spec pinned to D, imageID reports D, D recorded as migrated. */
async function assertPinned(t: Test, shop: Shop, digest: string): Promise<void> {
  const pods = await shop.pods();
  const migrated = await shop.migratedDigests();
  for (const p of pods) {
    t.equal(p.image, `${shop.env.images.ref("app", "latest")}@${digest}`, `${p.name}: spec pinned to the digest`);
    t.match(p.imageID, new RegExp(`@${digest}$`), `${p.name}: imageID is the digest`);
  }
  t.ok(migrated.includes(digest), "the Migrator records the digest");
}

t.test("first sync, a new push, a no-op sync, a rollback", async (t) => {
  const clock = timings(t);
  const shop = await startShop(t);
  clock.mark("environment");

  // First sync: v1 lands, is migrated once, and the pods are released.
  const v1 = await shop.push("v1");
  await shop.sync();
  const m1 = await shop.waitMigrated(v1);
  await shop.waitRolledOut(v1);
  clock.mark("first sync rolled out");
  t.equal(m1.status?.lastSuccessfulMigration, v1, "lastSuccessfulMigration is the digest, not the tag");
  t.match(m1.status?.lastSuccessfulMigration, /^sha256:[0-9a-f]{64}$/);
  await assertPinned(t, shop, v1);
  let h = await shop.history();
  t.same(
    h.migrations.map((m) => [m.version, m.digest]),
    [["0001", v1]],
  );
  t.equal(h.runs.length, 1, "one migration run");

  // The migration Job is the app's own pod template: the Secret's DATABASE_URL reached it.
  const jobs = await shop.jobs();
  t.equal(jobs.length, 1, "one Job");
  t.equal(jobs[0]?.metadata.annotations?.["migrations.coderanger.net/digest"], v1);

  // Git unchanged: a second sync changes nothing, no Job, no run.
  await shop.sync();
  t.equal((await shop.jobs()).length, 1);

  // CI pushes v2 to the same tag; the workload is restarted; one more migration.
  const v2 = await shop.push("v2");
  await shop.restart();
  await shop.waitMigrated(v2);
  await shop.waitRolledOut(v2);
  clock.mark("new push rolled out");
  await assertPinned(t, shop, v2);
  h = await shop.history();
  t.same(
    h.migrations.map((m) => [m.version, m.digest]),
    [
      ["0001", v1],
      ["0002", v2],
    ],
  );
  t.same(
    h.runs.map((r) => [r.digest, r.status, r.applied]),
    [
      [v1, "succeeded", ["0001"]],
      [v2, "succeeded", ["0002"]],
    ],
  );

  // Rollback: latest points at v1 again; the digest was migrated, so the pods go at once, no Job.
  const jobsBefore = (await shop.jobs()).map((j) => j.metadata.name);
  const runsBefore = h.runs.length;
  await shop.retag(v1);
  await shop.restart();
  await shop.waitRolledOut(v1);
  clock.mark("rollback rolled out");
  await assertPinned(t, shop, v1);
  h = await shop.history();
  t.equal(h.runs.length, runsBefore, "no migration for a digest migrated before");
  const jobsAfter = (await shop.jobs()).map((j) => j.metadata.name);
  t.same(
    jobsAfter.filter((n) => !jobsBefore.includes(n)),
    [],
    "no new Job",
  );
  t.same(historyProblems(h), []);
  t.same(await shop.gatingProblems(), [], "every app container started after its digest was migrated");
  const m = await shop.migrator();
  t.equal(m?.status?.conditions?.find((c) => c.type === "Ready")?.status, "True", "Ready");
  const succeeded = await shop.waitEvent((e) => e.reason === REASONS.Succeeded, "an Event Succeeded");
  t.match(succeeded.message, /is migrated/, "an event tells the migration succeeded");
  t.same(await shop.release.restarts(), [], "the reconciler never crashed");
  t.same(shop.waiterRestarts(), [], "every waiter ran once and exited 0");
  t.same(buildVersions("v2"), ["0001", "0002"]);
});

t.test("a second push while a migration runs: the newest digest wins, nothing is migrated twice", async (t) => {
  const clock = timings(t);
  const shop = await startShop(t);
  const slow = await shop.push("v2", { migrateSleepMs: 4_000 });
  await shop.sync();
  // The slow migration is running in its Job's pod.
  await waitFor(async () => (await shop.history()).runs.some((r) => r.digest === slow && r.status === "running"), {
    what: "the first migration to be running",
    timeoutMs: 60_000,
  });
  clock.mark("first migration running");
  const v3 = await shop.push("v3");
  await shop.restart();
  await shop.waitMigrated(v3, MIGRATOR, 180_000);
  await shop.waitRolledOut(v3);
  clock.mark("newest digest rolled out");
  const h = await shop.history();
  t.same(historyProblems(h), [], "no digest ran twice, no app started early");
  t.same(
    h.migrations.map((m) => m.version),
    ["0001", "0002", "0003"],
    "each migration applied once, in order",
  );
  t.equal(h.runs.filter((r) => r.digest === v3).length, 1, "one run for the newest digest");
  t.same(await shop.gatingProblems(), []);
  await assertPinned(t, shop, v3);
});
