// The pin and the kubelet, on the real node. A gated pod's app container image is patched to
// name:tag@digest while its waiter runs; when the waiter then exits at once (a digest migrated
// before: a rollback, a scale-up), a kubelet 1.20 that has not yet synced the patched spec starts
// the container from the old spec's image, logs "definition changed, will be restarted", kills it
// and starts it again pinned. The reconciler must release only once the kubelet's own status shows
// the pinned reference. Counted from containerd: every app container starts exactly once per pod,
// from exactly the digest its pod is pinned to.
import t from "tap";
import { DEPLOYMENT } from "../apps/shop/builds.ts";
import { startShop } from "../pipeline/start-shop.ts";
import { timings } from "./report.ts";

const ROUNDS = 3;
const REPLICAS = 3;

t.test(`${ROUNDS} rollouts of a migrated digest: every app container starts once, pinned`, async (t) => {
  const clock = timings(t);
  const shop = await startShop(t);
  const v1 = await shop.push("v1");
  await shop.sync();
  await shop.env.kube.patchObject("apps/v1", "Deployment", shop.namespace, DEPLOYMENT, {
    spec: { replicas: REPLICAS },
  });
  await shop.waitRolledOut(v1, { replicas: REPLICAS });
  clock.mark("v1 migrated and rolled out");
  for (let round = 1; round <= ROUNDS; round++) {
    // Each new pod's digest is migrated already: its waiter is released as soon as it may be.
    await shop.restart();
    await shop.waitRolledOut(v1, { replicas: REPLICAS });
    clock.mark(`rollout ${round}`);
  }
  await shop.env.starts.settled();
  const appPods = new Set(shop.env.starts.starts.filter((s) => s.container === "app").map((s) => s.podUid));
  t.ok(appPods.size >= REPLICAS * (ROUNDS + 1), `containerd reported the app starts of ${appPods.size} pods`);
  t.same(await shop.gatingProblems(), [], "each app container started once, from its pod's pinned digest");
  t.equal((await shop.jobs()).length, 1, "one migration for the one digest");
});
