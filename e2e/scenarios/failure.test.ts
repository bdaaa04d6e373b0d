// A failing migration, then a fixed push: the broken digest's pods stay gated (the old pods keep
// serving), the failure shows on the Migrator (condition, event) and is not retried in a loop; the
// fixed push migrates and rolls out.
import t from "tap";
import { CONDITION_MIGRATIONS_READY, REASONS } from "@digest-migrations/shared";
import { MIGRATOR } from "../apps/shop/builds.ts";
import { historyProblems } from "../apps/shop/database.ts";
import { waitFor } from "../kit/wait.ts";
import { startShop } from "../pipeline/start-shop.ts";
import { timings } from "./report.ts";

t.test("a failing migration leaves its pods gated and shows on the Migrator; a fixed push goes through", async (t) => {
  const clock = timings(t);
  const shop = await startShop(t);
  const v3 = shop.push("v3");
  await shop.sync();
  await shop.waitMigrated(v3);
  await shop.waitRolledOut(v3);
  clock.mark("v3 rolled out");

  const broken = shop.push("broken");
  await shop.restart();
  const failed = await waitFor(
    async () => {
      const m = await shop.migrator();
      const c = m?.status?.conditions?.find((x) => x.type === CONDITION_MIGRATIONS_READY);
      return c?.status === "False" && c.reason === REASONS.Failed ? c : undefined;
    },
    {
      what: "the Migrator to show the failed migration",
      timeoutMs: 60_000,
      describe: async () => JSON.stringify((await shop.migrator())?.status),
    },
  );
  clock.mark("failure shown");
  t.match(failed.message, /failed/i);
  t.match(failed.message, broken.slice(0, 20), "the condition names the digest");
  const failedEvent = await shop.waitEvent((e) => e.reason === REASONS.Failed, "an Event Failed on the Migrator");
  t.equal(failedEvent.type, "Warning", "a Warning event on the Migrator");
  const h = await shop.history();
  const brokenRuns = h.runs.filter((r) => r.digest === broken);
  t.equal(brokenRuns.length, 1);
  t.equal(brokenRuns[0]?.status, "failed");
  // The old pods keep serving v3; the new ones wait in their waiter and never start the app.
  const pods = await shop.pods();
  t.ok(pods.filter((p) => p.appRunning && p.imageID?.endsWith(v3)).length >= 2, "v3 pods keep serving");
  t.ok(
    pods.some((p) => p.waiting && !p.appRunning),
    `a pod of the broken push is gated: ${await shop.describePods()}`,
  );
  t.same(
    shop.env.node.startsMatching({ container: "app", digest: broken }),
    [],
    "no app container of the broken digest started",
  );

  // CI pushes the fix: it is migrated, released, and the broken digest never ran again.
  const fixed = shop.push("fixed");
  await shop.restart();
  await shop.waitMigrated(fixed, MIGRATOR, 90_000);
  await shop.waitRolledOut(fixed);
  clock.mark("fixed rolled out");
  const after = await shop.history();
  t.same(
    after.migrations.map((m) => [m.version, m.digest]),
    [
      ["0001", v3],
      ["0002", v3],
      ["0003", v3],
      ["0004", fixed],
    ],
  );
  t.equal(after.runs.filter((r) => r.digest === broken).length, 1, "the failed migration was not retried");
  t.same(historyProblems(after), []);
  t.same(await shop.gatingProblems(), []);
  const m = await shop.migrator();
  t.equal(
    m?.status?.conditions?.find((c) => c.type === CONDITION_MIGRATIONS_READY)?.status,
    "True",
    "MigrationsReady again",
  );
});
