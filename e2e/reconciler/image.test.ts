// spec.image, upstream's separate migrations image: the migration is still keyed on the digest of the
// application image that lands on the node (that is what the Migrator records), while the Job runs
// spec.image — pinned to that digest when it is the application's repository, as written otherwise,
// with a Warning Event when a tag of another repository could move under it.
import t from "tap";
import { ANNOTATIONS } from "@digest-migrations/shared";
import type { Pod } from "@digest-migrations/shared";
import { deployment } from "../harness/objects.ts";
import { APP_IMAGE, appContainer, appImage, reconcilerEnv } from "./setup.ts";

const MIGRATIONS_IMAGE = "registry.example/app-migrations";

t.test("spec.image from another repository runs as written, keyed on the app digest", async (t) => {
  const env = await reconcilerEnv(t);
  const d1 = env.registry.push(APP_IMAGE, "latest", appImage("v1"));
  env.registry.push(MIGRATIONS_IMAGE, "v1", appImage("v1"));
  await env.migrator("db", {
    selector: { matchLabels: { app: "web" } },
    image: `${MIGRATIONS_IMAGE}:v1`,
    command: ["migrate"],
  });
  await env.kube.createObject(
    deployment(env.namespace, "web", [appContainer(env)], { replicas: 1, initContainers: [env.waiter("db")] }),
  );
  const ready = await env.waitReady("db", d1, 90_000);
  t.equal(ready.status?.lastSuccessfulMigration, d1, "the application's digest is recorded");
  const jobs = await env.jobs();
  t.equal(jobs.length, 1, "one Job");
  const job = jobs[0]!;
  const image = (job.spec as { template: { spec: Pod["spec"] } }).template.spec.containers[0]?.image;
  t.equal(image, `${MIGRATIONS_IMAGE}:v1`, "the Job runs spec.image as written");
  t.equal(job.metadata.annotations?.[ANNOTATIONS.digest], d1, "the Job is keyed on the application's digest");
  const warnings = await env.waitEvents("MigrationImageNotPinned");
  t.equal(warnings.length, 1, "one Warning Event");
  t.match(warnings[0]?.["message"], /another repository/);
  t.equal(warnings[0]?.["type"], "Warning");
});

t.test("spec.image in the application's repository is pinned to the app digest", async (t) => {
  const env = await reconcilerEnv(t);
  const d1 = env.registry.push(APP_IMAGE, "latest", appImage("v1"));
  await env.migrator("db", {
    selector: { matchLabels: { app: "web" } },
    image: `${APP_IMAGE}:migrations`,
    command: ["migrate"],
  });
  await env.kube.createObject(
    deployment(env.namespace, "web", [appContainer(env)], { replicas: 1, initContainers: [env.waiter("db")] }),
  );
  await env.waitReady("db", d1, 90_000);
  const [job] = await env.jobs();
  const image = (job?.spec as { template: { spec: Pod["spec"] } }).template.spec.containers[0]?.image;
  t.equal(image, `${APP_IMAGE}:migrations@${d1}`, "same repository: pinned to the digest that landed");
  t.equal((await env.events("MigrationImageNotPinned")).length, 0, "no warning");
});
