// What the cluster itself runs on, restarted mid-flow: kube-apiserver stopped and started, containerd
// restarted (its shims and containers keep running, as on a real node), the kubelet restarted. Each
// while a migration runs and new pods are gated. These disturb every test running at the same time,
// so this file runs after the others, alone (npm test's second phase; `.serial.ts` keeps it out of
// the first). After each: the reconciler recovered by itself (never restarted), exactly one
// migration run per digest, every app container started once from its pinned, migrated digest
// (counted from containerd, whose event stream is reopened after its restart), nothing left gated.
import t from "tap";
import type { BuildName } from "../apps/shop/builds.ts";
import { MIGRATOR } from "../apps/shop/builds.ts";
import { waitFor } from "../kit/wait.ts";
import { startShop } from "../pipeline/start-shop.ts";
import { assertClean } from "../scenarios/promises.ts";
import { table, timings } from "../scenarios/report.ts";
import { inject } from "../world/control.ts";
import type { Fault } from "../world/control.ts";

const cases: { name: string; faults: Fault[] }[] = [
  { name: "kube-apiserver stopped and started", faults: ["apiserver/stop", "apiserver/start"] },
  { name: "containerd restarted", faults: ["containerd/restart"] },
  { name: "the kubelet restarted", faults: ["kubelet/restart"] },
];

for (const c of cases) {
  void t.test(`${c.name} mid-migration: everything recovers by itself, one run per digest`, async (t) => {
    const clock = timings(t);
    const shop = await startShop(t);
    const rows: (string | number)[][] = [];
    // Once on the first sync (a gated Deployment, a probe, a migration) and once on a new push (pods
    // running, new ones gated, a rolling update).
    for (const [round, build] of (["v1", "v2"] as BuildName[]).entries()) {
      const digest = await shop.push(build, { migrateSleepMs: 3_000 });
      if (round === 0) await shop.sync();
      else await shop.restart();
      await waitFor(
        async () => (await shop.history()).runs.some((r) => r.digest === digest && r.status === "running"),
        {
          what: `the migration of ${build} to be running`,
          timeoutMs: 120_000,
        },
      );
      const t0 = Date.now();
      for (const f of c.faults) await inject(shop.env.world.control, f);
      const outage = Date.now() - t0;
      await shop.waitMigrated(digest, MIGRATOR, 180_000);
      await shop.waitRolledOut(digest, { timeoutMs: 180_000 });
      rows.push([round + 1, build, (outage / 1000).toFixed(1), ((Date.now() - t0 - outage) / 1000).toFixed(1)]);
    }
    clock.mark("2 rounds");
    table(t, c.name, ["round", "build", "fault s", "recovered after s"], rows);
    t.same(await shop.release.restarts(), [], "the reconciler was never restarted");
    if (c.faults.includes("containerd/restart"))
      t.ok(shop.env.starts.resubscribed >= 1, "containerd's event stream was reopened after its restart");
    await assertClean(t, shop);
  });
}
