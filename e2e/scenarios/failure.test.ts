// A failing migration on the real node, then a fixed push: the broken digest's pods stay gated in
// their waiter (the old pods keep serving), the failure shows on the Migrator (condition, Warning
// event) and is not retried in a loop; containerd never starts an app container of the broken
// digest; the fixed push migrates and rolls out.
import t from "tap";
import { CONDITION_MIGRATIONS_READY, REASONS } from "@digest-migrations/shared";
import { APP_CONTAINER, MIGRATOR } from "../apps/shop/builds.ts";
import { historyProblems } from "../apps/shop/database.ts";
import { waitFor } from "../kit/wait.ts";
import { startShop } from "../pipeline/start-shop.ts";
import { timings } from "./report.ts";

t.test("a failing migration leaves its pods gated and shows on the Migrator; a fixed push goes through", async (t) => {
  const clock = timings(t);
  const shop = await startShop(t);
  const v3 = await shop.push("v3");
  await shop.sync();
  await shop.waitMigrated(v3);
  await shop.waitRolledOut(v3);
  clock.mark("v3 rolled out");

  const broken = await shop.push("broken");
  await shop.restart();
  const failed = await waitFor(
    async () => {
      const m = await shop.migrator();
      const c = m?.status?.conditions?.find((x) => x.type === CONDITION_MIGRATIONS_READY);
      return c?.status === "False" && c.reason === REASONS.Failed ? c : undefined;
    },
    {
      what: "the Migrator to show the failed migration",
      timeoutMs: 120_000,
      describe: async () => `${JSON.stringify((await shop.migrator())?.status)}; pods: ${await shop.describePods()}`,
    },
  );
  clock.mark("failure shown");
  t.match(failed.message, /failed/i);
  t.match(failed.message, broken.slice(0, 20), "the condition names the digest");
  const failedEvent = await shop.waitEvent((e) => e.reason === REASONS.Failed, "an Event Failed on the Migrator");
  t.equal(failedEvent.type, "Warning", "a Warning event on the Migrator");
  const h = await shop.history();
  const brokenRuns = h.runs.filter((r) => r.digest === broken);
  t.equal(brokenRuns.length, 1, "one run of the broken migration");
  t.equal(brokenRuns[0]?.status, "failed");
  // The old pods keep serving v3; the new one waits in its waiter and never starts the app.
  const pods = await shop.pods();
  t.ok(pods.filter((p) => p.appRunning && p.imageID?.endsWith(v3)).length >= 2, "v3 pods keep serving");
  t.ok(
    pods.some((p) => p.waiting && !p.appRunning && !p.terminating),
    `a pod of the broken push is gated: ${await shop.describePods()}`,
  );
  await shop.env.starts.settled();
  t.same(
    shop.env.starts.starts.filter(
      (s) => s.container === APP_CONTAINER && s.repoDigests.some((d) => d.endsWith(`@${broken}`)),
    ),
    [],
    "containerd started no app container of the broken digest",
  );

  // CI pushes the fix: it is migrated, released, and the broken digest never ran again.
  const fixed = await shop.push("fixed");
  await shop.restart();
  await shop.waitMigrated(fixed, MIGRATOR);
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
  t.same(await shop.gatingProblems(), [], "every app container started once, from its pinned, migrated digest");
  t.same(shop.waiterRestarts(), [], "every waiter ran once");
  const m = await shop.migrator();
  t.equal(
    m?.status?.conditions?.find((c) => c.type === CONDITION_MIGRATIONS_READY)?.status,
    "True",
    "MigrationsReady again",
  );
});
