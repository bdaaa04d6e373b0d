// Faults, each repeated enough to mean something, figures printed as tables:
// - the reconciler SIGKILLed at random points of the flow (≥ 20 times) and restarted;
// - two replicas with leader election, the leader SIGKILLed mid-migration;
// - the apiserver stopped and restarted mid-flow, the reconciler left running;
// - the waiters' reconciler unreachable for a while.
// After each: no digest migrated twice (counted in PostgreSQL), no pod left gated whose digest
// succeeded, no app container started before its digest was migrated, nothing crashed.
import t from "tap";
import type { Test } from "tap";
import type { KubeObject } from "@digest-migrations/shared";
import { MIGRATOR } from "../apps/shop/builds.ts";
import type { BuildName } from "../apps/shop/builds.ts";
import { historyProblems, runsByDigest } from "../apps/shop/database.ts";
import { delay, waitFor } from "../kit/wait.ts";
import { startShop } from "../pipeline/start-shop.ts";
import type { Shop } from "../pipeline/stack.ts";
import { shortDigest } from "../demo/narrator.ts";
import { table, timings } from "./report.ts";

/** A small seeded PRNG (mulberry32), so a failing run can be replayed with DM_FAULT_SEED. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const seed = Number(process.env.DM_FAULT_SEED ?? Date.now() % 100_000);

/** Waiter init containers that exited non-zero or were restarted (they should only ever exit 0). */
function waiterCrashes(shop: Shop): number {
  const starts = shop.env.node.starts.filter(
    (s) => s.namespace === shop.namespace && s.init && s.container.startsWith("migrate-wait-"),
  );
  const perPod = new Map<string, number>();
  for (const s of starts) perPod.set(`${s.pod}/${s.container}`, (perPod.get(`${s.pod}/${s.container}`) ?? 0) + 1);
  return [...perPod.values()].filter((n) => n > 1).length;
}

async function assertClean(t: Test, shop: Shop): Promise<void> {
  const h = await shop.history();
  t.same(historyProblems(h), [], "no digest migrated twice, no app started before its migrations");
  t.same(await shop.gatingProblems(), [], "every app container ran a digest recorded as migrated");
  const gated = (await shop.pods()).filter((p) => p.waiting && !p.terminating);
  t.same(
    gated.map((p) => p.name),
    [],
    "no pod left gated",
  );
  for (const r of shop.reconcilers) t.same(r.unexpectedExits, [], `${r.identity} never crashed`);
  t.equal(waiterCrashes(shop), 0, "no waiter crashed or restarted");
}

t.test("the reconciler SIGKILLed at random points 20 times", async (t) => {
  t.comment(`DM_FAULT_SEED=${seed}`);
  const rnd = random(seed);
  const clock = timings(t);
  const shop = await startShop(t);
  const reconciler = shop.reconcilers[0]!;
  const v1 = shop.push("v1");
  await shop.sync();
  await shop.waitRolledOut(v1);
  clock.mark("baseline");

  const builds: BuildName[] = ["v2", "v3", "v3", "v3", "v3"];
  const rows: (string | number)[][] = [];
  let kills = 0;
  for (const [round, build] of builds.entries()) {
    const started = Date.now();
    const digest = shop.push(build, { migrateSleepMs: 1_500 });
    await shop.restart();
    const points: number[] = [];
    for (let k = 0; k < 4; k++) {
      // Fault injection at a random moment of the flow (not synchronisation).
      const wait = Math.round(200 + rnd() * 2_300);
      await delay(wait);
      points.push(wait);
      await reconciler.kill("SIGKILL");
      kills++;
      await reconciler.start();
    }
    await shop.waitRolledOut(digest, { timeoutMs: 90_000 });
    const runs = (await shop.history()).runs.filter((r) => r.digest === digest);
    rows.push([
      round + 1,
      build,
      shortDigest(digest),
      points.join("/"),
      runs.length,
      ((Date.now() - started) / 1000).toFixed(1),
    ]);
  }
  clock.mark("20 kills");
  table(
    t,
    `reconciler SIGKILLs (seed ${seed})`,
    ["round", "build", "digest", "kill after ms", "runs", "seconds"],
    rows,
  );
  t.ok(kills >= 20, `${kills} kills`);
  const h = await shop.history();
  const runs = runsByDigest(h.runs);
  for (const { digest } of shop.pushes)
    t.equal(runs.get(digest)?.length, 1, `exactly one run for ${shortDigest(digest)}`);
  t.comment(`duplicate migration runs: ${[...runs.values()].filter((r) => r.length > 1).length}`);
  await assertClean(t, shop);
});

t.test("two replicas: the leader SIGKILLed mid-migration, the other takes over", async (t) => {
  const clock = timings(t);
  const shop = await startShop(t, { replicas: 2 });
  const rows: (string | number)[][] = [];
  for (const [round, build] of (["v1", "v2", "v3"] as BuildName[]).entries()) {
    const digest = shop.push(build, { migrateSleepMs: 2_500 });
    if (round === 0) await shop.sync();
    else await shop.restart();
    await waitFor(async () => (await shop.history()).runs.some((r) => r.digest === digest && r.status === "running"), {
      what: `the migration of ${build} to be running`,
      timeoutMs: 60_000,
    });
    const lease = await shop.env.kube.get<KubeObject & { spec?: { holderIdentity?: string } }>(
      `/apis/coordination.k8s.io/v1/namespaces/${shop.namespace}/leases/digest-migrations-reconciler`,
    );
    const leader = shop.reconcilers.find((r) => r.identity === lease.spec?.holderIdentity);
    if (!leader) throw new Error(`no running replica holds the Lease (holder ${lease.spec?.holderIdentity})`);
    const t0 = Date.now();
    await leader.kill("SIGKILL");
    await shop.waitMigrated(digest, MIGRATOR, 60_000);
    await shop.waitRolledOut(digest, { timeoutMs: 60_000 });
    const after = await shop.env.kube.get<KubeObject & { spec?: { holderIdentity?: string } }>(
      `/apis/coordination.k8s.io/v1/namespaces/${shop.namespace}/leases/digest-migrations-reconciler`,
    );
    t.not(after.spec?.holderIdentity, leader.identity, "the other replica leads now");
    const jobs = (await shop.jobs()).filter(
      (j) => j.metadata.annotations?.["migrations.coderanger.net/digest"] === digest,
    );
    const runs = (await shop.history()).runs.filter((r) => r.digest === digest);
    rows.push([
      round + 1,
      build,
      leader.identity,
      after.spec?.holderIdentity ?? "-",
      jobs.length,
      runs.length,
      ((Date.now() - t0) / 1000).toFixed(1),
    ]);
    t.equal(jobs.length, 1, "exactly one Job for the digest (kept, as the current digest's, for its logs)");
    t.equal(runs.length, 1, "exactly one migration run for the digest");
    await leader.start(); // rejoins as a follower
  }
  clock.mark("3 failovers");
  table(
    t,
    "leader failover mid-migration",
    ["round", "build", "killed", "new leader", "Jobs", "runs", "recovered s"],
    rows,
  );
  await assertClean(t, shop);
});

t.test("the apiserver stopped and restarted mid-flow: the running reconciler recovers by itself", async (t) => {
  const clock = timings(t);
  const shop = await startShop(t);
  const cluster = shop.env.cluster;
  if (!cluster.stopApiserver || !cluster.startApiserver) {
    t.comment("an external cluster cannot be stopped: nothing to test here");
    return;
  }
  const reconciler = shop.reconcilers[0]!;
  const rows: (string | number)[][] = [];
  for (const [round, build] of (["v1", "v2"] as BuildName[]).entries()) {
    const digest = shop.push(build, { migrateSleepMs: 2_000 });
    if (round === 0) await shop.sync();
    else await shop.restart();
    await waitFor(async () => (await shop.history()).runs.some((r) => r.digest === digest && r.status === "running"), {
      what: `the migration of ${build} to be running`,
      timeoutMs: 60_000,
    });
    const t0 = Date.now();
    await cluster.stopApiserver();
    await delay(3_000); // the outage (fault injection)
    await cluster.startApiserver();
    const outage = Date.now() - t0;
    await shop.waitMigrated(digest, MIGRATOR, 90_000);
    await shop.waitRolledOut(digest, { timeoutMs: 90_000 });
    rows.push([
      round + 1,
      build,
      (outage / 1000).toFixed(1),
      ((Date.now() - t0 - outage) / 1000).toFixed(1),
      reconciler.starts,
    ]);
  }
  clock.mark("2 outages");
  table(
    t,
    "apiserver outages mid-migration",
    ["round", "build", "outage s", "recovered after s", "reconciler starts"],
    rows,
  );
  t.equal(reconciler.starts, 1, "the reconciler was never restarted");
  t.ok(reconciler.running, "and is still running");
  await assertClean(t, shop);
});

t.test("the waiters cannot reach the reconciler for a while: pods stay gated, then are released", async (t) => {
  const clock = timings(t);
  const shop = await startShop(t);
  const rows: (string | number)[][] = [];
  for (const [round, build] of (["v1", "v2", "v3"] as BuildName[]).entries()) {
    shop.service.pause();
    const digest = shop.push(build);
    if (round === 0) await shop.sync();
    else await shop.restart();
    // The reconciler itself works (it talks to the apiserver): the digest gets migrated …
    await shop.waitMigrated(digest);
    // … but the new pods cannot hear it, so they stay in their waiter.
    const refusedBefore = shop.service.refused;
    await waitFor(() => shop.service.refused > refusedBefore, { what: "a waiter to retry", timeoutMs: 30_000 });
    const gated = (await shop.pods()).filter((p) => p.waiting && !p.terminating);
    t.ok(gated.length > 0, `pods are gated while the reconciler is unreachable: ${await shop.describePods()}`);
    t.same(
      shop.env.node.startsMatching({ container: "app", digest }),
      [],
      "no app container of the new digest started",
    );
    const t0 = Date.now();
    shop.service.resume();
    await shop.waitRolledOut(digest, { timeoutMs: 90_000 });
    rows.push([round + 1, build, gated.length, shop.service.refused, ((Date.now() - t0) / 1000).toFixed(1)]);
  }
  clock.mark("3 outages");
  table(t, "waiter API unreachable", ["round", "build", "gated pods", "refused connections", "released after s"], rows);
  await assertClean(t, shop);
});
