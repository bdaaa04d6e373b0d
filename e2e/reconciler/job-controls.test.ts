// The migration Job's controls on the real node: spec.activeDeadlineSeconds stops a hung migration (the
// Job controller's DeadlineExceeded), the Migrator says Failed naming the deadline, a Warning Event,
// Degraded in Argo CD, its pods stay gated and no new Job is started; spec.resources reach the migration
// container; spec.ttlSecondsAfterFinished removes a succeeded Job only once its digest is recorded; a bad
// value is InvalidSpec naming the field.
import t from "tap";
import { CONDITION_READY, REASONS } from "@digest-migrations/shared";
import type { Condition, Migrator } from "@digest-migrations/shared";
import { health } from "../../deploy/argocd/lua.ts";
import { ApiError } from "../kit/client.ts";
import { waitFor } from "../kit/wait.ts";
import {
  appDeployment,
  appImage,
  describeMigrator,
  observe,
  reconcilerEnv,
  runningImages,
  unmigratedStarts,
} from "./setup.ts";

const ready = (m: Migrator | undefined): Condition | undefined =>
  m?.status?.conditions?.find((c) => c.type === CONDITION_READY);

t.test("a migration past spec.activeDeadlineSeconds: Failed, gated, no retry of its own", async (t) => {
  const env = await reconcilerEnv(t);
  // The migration waits for a file that never appears: only the deadline ends it.
  await env.push(appImage("v1", { HOLD_FILE: env.flag("never") }));
  await env.migrator("db", {
    selector: { matchLabels: { app: "web" } },
    command: ["migrate"],
    activeDeadlineSeconds: 10,
    resources: { requests: { cpu: "20m", memory: "64Mi" }, limits: { memory: "256Mi" } },
  });
  await env.kube.createObject(appDeployment(env, "web", { migrator: "db" }));

  const running = await env.waitReason("db", REASONS.Running);
  const [job] = await env.jobs();
  const jobSpec = job?.["spec"] as {
    activeDeadlineSeconds?: number;
    template: { spec: { containers: { resources?: unknown }[] } };
  };
  t.equal(jobSpec.activeDeadlineSeconds, 10, "the Job carries the deadline");
  t.same(
    jobSpec.template.spec.containers[0]?.resources,
    { requests: { cpu: "20m", memory: "64Mi" }, limits: { memory: "256Mi" } },
    "and the migration container the Migrator's resources",
  );
  t.equal(running.status?.currentJob, job?.metadata.name);

  const failed = await env.waitReason("db", REASONS.Failed, 120_000);
  const message = ready(failed)?.message ?? "";
  t.match(message, /ran past its deadline of 10 s \(spec\.activeDeadlineSeconds\)/, "the message names the deadline");
  t.match(message, /DeadlineExceeded/, "and the Job controller's reason");
  t.equal(health(failed).status, "Degraded", "Degraded in Argo CD");
  const events = await env.waitEvents(REASONS.Failed);
  t.equal(events[0]?.["type"], "Warning", "a Warning Event");

  // Several full reconciles later: still one Job, the pod still in its waiter, nothing started.
  const seen = { jobs: new Set<string>(), running: [] as string[] };
  const reconciles = await observe(env, "db", 6_000, async () => {
    for (const j of await env.jobs()) seen.jobs.add(j.metadata.name ?? "");
    seen.running.push(...runningImages(await env.pods("app=web")));
  });
  t.same([...seen.jobs], [job?.metadata.name], "no new Job");
  t.same(seen.running, [], "the app container never started");
  t.ok(reconciles >= 3, `the window spanned ${reconciles} reconciles`);
  t.same(await unmigratedStarts(env, "web-", []), [], "containerd never started the app");
});

t.test("spec.ttlSecondsAfterFinished: the Job goes only after its digest is recorded; bad values", async (t) => {
  const env = await reconcilerEnv(t);
  const digest = await env.push(appImage("v1"));
  await env.migrator("db", {
    selector: { matchLabels: { app: "web" } },
    command: ["migrate"],
    ttlSecondsAfterFinished: 0,
  });
  await env.kube.createObject(appDeployment(env, "web", { migrator: "db" }));
  const migrated = await env.waitReady("db", digest);
  const job = migrated.status?.migratedDigests?.[0]?.job;
  await waitFor(async () => (await env.jobs()).length === 0, {
    what: `the succeeded Job ${job} to be removed`,
    timeoutMs: 60_000,
    describe: () => describeMigrator(env, "db"),
  });
  const after = await env.getMigrator("db");
  t.equal(after?.status?.migratedDigests?.[0]?.digest, digest, "its digest stays recorded");
  t.equal(ready(after)?.reason, REASONS.Succeeded, "and the Migrator Succeeded");
  await waitFor(async () => runningImages(await env.pods("app=web")).some((id) => id.endsWith(`@${digest}`)), {
    what: "the web pod to be released",
    timeoutMs: 120_000,
    describe: () => describeMigrator(env, "db"),
  });
  t.equal((await env.applied()).length, 1, "migrated once");

  // Values the schema lets through but Kubernetes would refuse on the Job's pod.
  await env.migrator("greedy", {
    selector: { matchLabels: { app: "greedy" } },
    resources: { requests: { memory: "1Gi" }, limits: { memory: "64Mi" } },
  });
  const greedy = await env.waitReason("greedy", REASONS.InvalidSpec);
  t.match(ready(greedy)?.message, /spec\.resources\.requests\.memory: .* is more than spec\.resources\.limits\.memory/);
  t.notOk(
    (await env.jobs()).some((j) => j.metadata.name?.startsWith("greedy-")),
    "no Job for it",
  );
  // A value out of range is refused by the CRD's schema, naming the field.
  const refused = await env.migrator("negative", { selector: {}, backoffLimit: -1 }).then(
    () => undefined,
    (err: unknown) => err,
  );
  t.ok(refused instanceof ApiError && refused.status === 422, "the API server refuses backoffLimit: -1");
  t.match((refused as Error).message, /spec\.backoffLimit/, "naming spec.backoffLimit");
});
