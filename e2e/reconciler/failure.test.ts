// A failing migration: the Migrator says Failed (condition and Event), pods stay gated, the Job is
// not recreated in a loop, and the retry annotation reruns the same digest.
import t from "tap";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ANNOTATIONS } from "@digest-migrations/shared";
import { migrationsStarted } from "../../reconciler/src/metrics.ts";
import { deployment } from "../harness/objects.ts";
import { delay, waitFor } from "../harness/wait.ts";
import { APP_IMAGE, appContainer, appImage, describeMigrator, reconcilerEnv, runningImages } from "./setup.ts";

t.test("a failed migration stays failed until retried", async (t) => {
  const env = await reconcilerEnv(t);
  const dir = mkdtempSync(path.join(tmpdir(), "dm-fail-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const failFile = path.join(dir, "fail");
  writeFileSync(failFile, "");
  const d1 = env.registry.push(APP_IMAGE, "latest", appImage("v1", { FAIL_FILE: failFile }));
  await env.migrator("db", { selector: { matchLabels: { app: "web" } }, command: ["migrate"] });
  await env.kube.createObject(
    deployment(env.namespace, "web", [appContainer(env)], { replicas: 1, initContainers: [env.waiter("db")] }),
  );
  const failed = await env.waitReason("db", "Failed", 90_000);
  t.equal(failed.status?.currentDigest, d1);
  t.notOk(failed.status?.lastSuccessfulMigration, "nothing recorded");
  t.ok((await env.waitEvents("Failed")).length >= 1, "a Warning Event");
  const startedCount = async (): Promise<number> =>
    (await migrationsStarted.get()).values.find((v) => v.labels.namespace === env.namespace)?.value ?? 0;

  // No retry storm: over a bounded window, still one Job, still gated.
  const windowEnd = Date.now() + 4000;
  while (Date.now() < windowEnd) {
    t.equal((await env.jobs()).length, 1, "one Job");
    t.equal(runningImages(await env.pods("app=web")).length, 0, "pods stay gated");
    await delay(500);
  }
  t.equal(await startedCount(), 1, "no new Job was created");

  // Fix the cause and ask for a retry of the same digest.
  rmSync(failFile);
  await env.kube.patchObject("migrations.coderanger.net/v1beta1", "Migrator", env.namespace, "db", {
    metadata: { annotations: { [ANNOTATIONS.retry]: "1" } },
  });
  await env.waitReady("db", d1, 90_000);
  t.equal(await startedCount(), 2, "exactly one retry");
  await waitFor(async () => runningImages(await env.pods("app=web")).length === 1, {
    what: "the pod to be released",
    timeoutMs: 60_000,
    describe: () => describeMigrator(env, "db"),
  });
  t.same(
    (await env.applied()).map((r) => r.version),
    ["v1"],
  );
});
