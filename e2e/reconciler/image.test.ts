// spec.image, upstream's separate migrations image: the migration is still keyed on the digest of the
// application image that lands on the node (that is what the Migrator records), while the Job runs
// spec.image — pinned to that digest when it is the application's repository, as written otherwise,
// with a Warning Event when a tag of another repository could move under it. On the real node: the
// Job's pod pulls and runs what the Job names, and its migration records the app's digest.
import t from "tap";
import { ANNOTATIONS } from "@digest-migrations/shared";
import type { Pod } from "@digest-migrations/shared";
import { appDeployment, appImage, reconcilerEnv } from "./setup.ts";

const MIGRATIONS_REPOSITORY = "app-migrations";

t.test("spec.image from another repository runs as written, keyed on the app digest", async (t) => {
  const env = await reconcilerEnv(t);
  const d1 = await env.push(appImage("v1"));
  await env.push(appImage("m1"), "v1", MIGRATIONS_REPOSITORY);
  const migrations = env.ref("v1", MIGRATIONS_REPOSITORY);
  await env.migrator("db", { selector: { matchLabels: { app: "web" } }, image: migrations, command: ["migrate"] });
  await env.kube.createObject(appDeployment(env, "web", { migrator: "db" }));
  const ready = await env.waitReady("db", d1);
  t.equal(ready.status?.lastSuccessfulMigration, d1, "the application's digest is recorded");
  const jobs = await env.jobs();
  t.equal(jobs.length, 1, "one Job");
  const job = jobs[0]!;
  const image = (job.spec as { template: { spec: Pod["spec"] } }).template.spec.containers[0]?.image;
  t.equal(image, migrations, "the Job runs spec.image as written");
  t.equal(job.metadata.annotations?.[ANNOTATIONS.digest], d1, "the Job is keyed on the application's digest");
  t.same(
    (await env.applied()).map((r) => [r.version, r.digest]),
    [["m1", d1]],
    "the migrations image ran, for the app's digest",
  );
  const warnings = await env.waitEvents("MigrationImageNotPinned");
  t.equal(warnings.length, 1, "one Warning Event");
  t.match(warnings[0]?.["message"], /another repository/);
  t.equal(warnings[0]?.["type"], "Warning");
});

t.test("spec.image in the application's repository is pinned to the app digest", async (t) => {
  const env = await reconcilerEnv(t);
  const d1 = await env.push(appImage("v1"));
  await env.migrator("db", {
    selector: { matchLabels: { app: "web" } },
    // A tag never pushed: the pin makes the node pull the digest that landed, whatever the tag.
    image: env.ref("migrations"),
    command: ["migrate"],
  });
  await env.kube.createObject(appDeployment(env, "web", { migrator: "db" }));
  await env.waitReady("db", d1);
  const [job] = await env.jobs();
  const image = (job?.spec as { template: { spec: Pod["spec"] } }).template.spec.containers[0]?.image;
  t.equal(image, `${env.ref("migrations")}@${d1}`, "same repository: pinned to the digest that landed");
  t.same(
    (await env.applied()).map((r) => [r.version, r.digest]),
    [["v1", d1]],
    "the node ran the pinned digest",
  );
  t.equal((await env.events("MigrationImageNotPinned")).length, 0, "no warning");
});
