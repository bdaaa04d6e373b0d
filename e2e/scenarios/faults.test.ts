// Faults to the reconciler on the real node, each repeated enough to mean something, figures
// printed as tables:
// - a reconciler replica's container SIGKILLed through the container runtime, or its pod deleted,
//   at random points of the flow (≥ 10 times, two replicas with leader election);
// - the leader killed mid-migration: the other replica takes over;
// - the waiters' way to the reconciler (a Service without ready endpoints) cut for a while.
// After each: exactly one migration run per digest (counted in PostgreSQL), no pod left gated whose
// digest succeeded, every app container started once from its pinned, migrated digest (counted
// from containerd), no waiter restarted. Faults to what the whole node runs on (apiserver,
// containerd, kubelet) are in e2e/serial/, run after everything else.
import t from "tap";
import { MIGRATOR } from "../apps/shop/builds.ts";
import type { BuildName } from "../apps/shop/builds.ts";
import { shortDigest } from "../demo/narrator.ts";
import { delay, waitFor } from "../kit/wait.ts";
import { ServiceProxy } from "../pipeline/service.ts";
import { startShop } from "../pipeline/start-shop.ts";
import { assertClean } from "./promises.ts";
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

t.test("a reconciler replica killed through the runtime or its pod deleted, at random points, 10 times", async (t) => {
  t.comment(`DM_FAULT_SEED=${seed}`);
  const rnd = random(seed);
  const clock = timings(t);
  const shop = await startShop(t);
  const v1 = await shop.push("v1");
  await shop.sync();
  await shop.waitRolledOut(v1);
  clock.mark("baseline");

  const builds: BuildName[] = ["v2", "v3", "v3", "v3", "v3"];
  const rows: (string | number)[][] = [];
  let faults = 0;
  for (const [round, build] of builds.entries()) {
    const started = Date.now();
    const digest = await shop.push(build, { migrateSleepMs: 1_500 });
    await shop.restart();
    const done: string[] = [];
    for (let k = 0; k < 2; k++) {
      // Fault injection at a random moment of the flow (not synchronisation).
      const wait = Math.round(500 + rnd() * 4_000);
      await delay(wait);
      // The leader when its container runs (the replica that writes), else any replica whose
      // container runs (one killed a moment ago may still be restarting).
      const victim = await waitFor(
        async () => {
          const running = (await shop.release.pods()).filter(
            (p) => !p.metadata.deletionTimestamp && p.status?.containerStatuses?.some((c) => c.state?.running),
          );
          const leader = await shop.release.leaderPod();
          return running.find((p) => p.metadata.uid === leader?.metadata.uid) ?? running[0];
        },
        { what: "a running reconciler replica", timeoutMs: 120_000 },
      );
      if (rnd() < 0.5) {
        await shop.release.killContainer(victim);
        done.push(`${wait}ms kill`);
      } else {
        await shop.release.deletePod(victim);
        done.push(`${wait}ms delete`);
      }
      faults++;
    }
    await shop.waitRolledOut(digest, { timeoutMs: 180_000 });
    await shop.release.waitReady(2);
    const runs = (await shop.history()).runs.filter((r) => r.digest === digest);
    rows.push([
      round + 1,
      build,
      shortDigest(digest),
      done.join(", "),
      runs.length,
      ((Date.now() - started) / 1000).toFixed(1),
    ]);
  }
  clock.mark(`${faults} faults`);
  table(t, `reconciler faults (seed ${seed})`, ["round", "build", "digest", "faults", "runs", "seconds"], rows);
  t.ok(faults >= 10, `${faults} faults`);
  await assertClean(t, shop);
});

t.test("the leader killed mid-migration: the other replica takes over, one Job, one run", async (t) => {
  const clock = timings(t);
  const shop = await startShop(t);
  const rows: (string | number)[][] = [];
  for (const [round, build] of (["v1", "v2", "v3"] as BuildName[]).entries()) {
    const digest = await shop.push(build, { migrateSleepMs: 4_000 });
    if (round === 0) await shop.sync();
    else await shop.restart();
    await waitFor(async () => (await shop.history()).runs.some((r) => r.digest === digest && r.status === "running"), {
      what: `the migration of ${build} to be running`,
      timeoutMs: 120_000,
    });
    const leader = await shop.release.leaderPod();
    if (!leader) throw new Error(`no running replica holds the Lease (holder ${await shop.release.leader()})`);
    const t0 = Date.now();
    await shop.release.killContainer(leader);
    await shop.waitMigrated(digest, MIGRATOR, 120_000);
    await shop.waitRolledOut(digest, { timeoutMs: 120_000 });
    const holder = await shop.release.leader();
    const jobs = (await shop.jobs()).filter(
      (j) => j.metadata.annotations?.["migrations.coderanger.net/digest"] === digest,
    );
    const runs = (await shop.history()).runs.filter((r) => r.digest === digest);
    rows.push([
      round + 1,
      build,
      leader.metadata.name ?? "",
      holder ?? "-",
      jobs.length,
      runs.length,
      ((Date.now() - t0) / 1000).toFixed(1),
    ]);
    t.equal(jobs.length, 1, "exactly one Job for the digest (kept, as the current digest's, for its logs)");
    t.equal(runs.length, 1, "exactly one migration run for the digest");
    await shop.release.waitReady(2);
  }
  clock.mark("3 failovers");
  table(
    t,
    "leader killed mid-migration",
    ["round", "build", "killed", "leader now", "Jobs", "runs", "recovered s"],
    rows,
  );
  await assertClean(t, shop);
});

t.test("the waiters cannot reach the reconciler for a while: pods stay gated, then are released", async (t) => {
  const clock = timings(t);
  const shop = await startShop(t);
  // A Service in front of the replicas' shared port; paused, it has no ready endpoints.
  const service = await ServiceProxy.start([shop.release.waiterPort]);
  t.teardown(() => service.close());
  const rows: (string | number)[][] = [];
  for (const [round, build] of (["v1", "v2"] as BuildName[]).entries()) {
    service.pause();
    const digest = await shop.push(build);
    if (round === 0) await shop.sync({ "reconciler-url": service.url });
    else await shop.restart();
    // The reconciler itself works (it talks to the apiserver): the digest gets migrated …
    await shop.waitMigrated(digest);
    // … but the new pods cannot hear it, so they stay in their waiter.
    const refusedBefore = service.refused;
    await waitFor(() => service.refused > refusedBefore, { what: "a waiter to retry", timeoutMs: 60_000 });
    const gated = (await shop.pods()).filter((p) => p.waiting && !p.terminating);
    t.ok(gated.length > 0, `pods are gated while the reconciler is unreachable: ${await shop.describePods()}`);
    await shop.env.starts.settled();
    const gatedUids = new Set(gated.map((p) => p.pod.metadata.uid));
    t.same(
      shop.env.starts.starts.filter((s) => s.container === "app" && gatedUids.has(s.podUid)),
      [],
      "no app container of a gated pod started",
    );
    const t0 = Date.now();
    service.resume();
    await shop.waitRolledOut(digest, { timeoutMs: 120_000 });
    rows.push([round + 1, build, gated.length, service.refused, ((Date.now() - t0) / 1000).toFixed(1)]);
  }
  clock.mark("2 outages");
  table(t, "waiter API unreachable", ["round", "build", "gated pods", "refused connections", "released after s"], rows);
  await assertClean(t, shop);
});
