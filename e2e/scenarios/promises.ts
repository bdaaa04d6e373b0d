// What every scenario with faults ends with: the product's promises, checked from PostgreSQL, the
// API and containerd.
import type { Test } from "tap";
import { historyProblems, runsByDigest } from "../apps/shop/database.ts";
import { shortDigest } from "../demo/narrator.ts";
import type { Shop } from "../pipeline/stack.ts";

/** What every fault test ends with: the promises held. */
export async function assertClean(t: Test, shop: Shop): Promise<void> {
  const h = await shop.history();
  t.same(historyProblems(h), [], "no digest migrated twice, no app started before its migrations");
  const runs = runsByDigest(h.runs);
  for (const { digest } of shop.pushes)
    t.equal(runs.get(digest)?.length, 1, `exactly one run for ${shortDigest(digest)}`);
  t.same(await shop.gatingProblems(), [], "every app container started once, from its pinned, migrated digest");
  const gated = (await shop.pods()).filter((p) => p.waiting && !p.terminating);
  t.same(
    gated.map((p) => p.name),
    [],
    "no pod left gated",
  );
  t.same(shop.waiterRestarts(), [], "no waiter crashed or restarted");
}
