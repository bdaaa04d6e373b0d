// `npm start`: the story of digest-keyed migrations, told on a real node.
//
// A Deployment says `image: <registry>/<namespace>/app:latest`; CI keeps overwriting `latest`; git
// never changes. Watch the database get migrated exactly once per digest that lands, before any pod
// running that digest starts — and not at all when an old digest comes back.
//
// It runs inside a world (`npm start` is `node e2e/world/run.ts node e2e/demo/demo.ts`): a control
// plane, a real node (kubelet, containerd, runc, a registry), PostgreSQL and the images users
// install, all on this machine. The demo works in a namespace of its own: the reconciler installed
// with Helm from its image, the shop's builds made with buildah and pushed by "CI", Argo CD's
// generate run inside the plugin image. Its Helm release, namespace and database are removed at the
// end, also on Ctrl-C or failure; run.ts then stops the world. Run by hand (`node e2e/demo/demo.ts`)
// it uses the world named by DM_WORLD or kept by `node e2e/world/run.ts --keep`, else starts and
// stops one of its own.
import { randomBytes } from "node:crypto";
import type { KubeObject } from "@digest-migrations/shared";
import { errorText, waitFor } from "../kit/wait.ts";
import { APP_CONTAINER, DEPLOYMENT, MIGRATOR, buildVersions } from "../apps/shop/builds.ts";
import { historyProblems } from "../apps/shop/database.ts";
import { setupShop } from "../pipeline/stack.ts";
import { openNodeEnv } from "../world/namespace.ts";
import { Narrator, shortDigest } from "./narrator.ts";
import { ClusterWatch } from "./watch.ts";

const NAMESPACE = `shop-demo-${randomBytes(3).toString("hex")}`;
const STEPS = 8;

/** Undo steps, run newest first. */
const cleanups: { what: string; run: () => Promise<unknown> }[] = [];
let cleaning: Promise<boolean> | undefined;

/**
 * Undoes everything started so far, newest first; each step on its own, so one failure stops nothing.
 * Resolves to false when any step failed (each failure is printed).
 */
function cleanUp(): Promise<boolean> {
  cleaning ??= (async () => {
    let clean = true;
    for (const c of cleanups.reverse()) {
      try {
        await c.run();
      } catch (err) {
        clean = false;
        process.stderr.write(`cleanup: ${c.what}: ${errorText(err)}\n`);
      }
    }
    return clean;
  })();
  return cleaning;
}

interface NodeView extends KubeObject {
  status?: {
    nodeInfo?: { kubeletVersion?: string; containerRuntimeVersion?: string };
    conditions?: { type: string; status: string }[];
  };
}

async function story(n: Narrator): Promise<void> {
  n.raw("digest-migrations: database migrations once per image digest, before the pods that run it.");
  n.raw("A Deployment says image: …/app:latest. CI overwrites latest; git stays the same.");

  n.step("Connect to the world: a control plane, a real node with its registry, PostgreSQL");
  n.note("npm start starts it before the demo (e2e/world/run.ts); the first run on a machine builds Kubernetes");
  n.note("and the images from source (about 15 minutes), later runs take a few minutes.");
  const env = await openNodeEnv(NAMESPACE, {}, (fn) => cleanups.push({ what: "the world's connection", run: fn }));
  const database = env.database;
  if (!database) throw new Error(`namespace ${NAMESPACE} has no database`);
  cleanups.push({
    what: `database ${database.name}`,
    run: () => env.postgres.query("postgres", `DROP DATABASE IF EXISTS "${database.name}" WITH (FORCE)`),
  });
  cleanups.push({
    what: `namespace ${NAMESPACE}`,
    run: async () => {
      await env.close();
      await waitFor(async () => (await env.kube.find(`/api/v1/namespaces/${NAMESPACE}`)) === undefined, {
        what: `namespace ${NAMESPACE} to be gone`,
        timeoutMs: 120_000,
      });
    },
  });
  const node = await env.kube.get<NodeView>(`/api/v1/nodes/${env.nodeName}`);
  const ready = node.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
  n.say(`API server at ${env.world.server}`);
  n.say(
    `node ${env.nodeName}: ${ready ? "Ready" : "not Ready"}, kubelet ${node.status?.nodeInfo?.kubeletVersion ?? "?"}, ` +
      `${node.status?.nodeInfo?.containerRuntimeVersion ?? "?"}`,
  );
  n.say(`registry at http://${env.world.node.registry} (CI pushes to it, the node pulls from it)`);
  n.say(`PostgreSQL on 127.0.0.1:${env.postgres.port}, database ${database.name}`);
  n.say(`namespace ${NAMESPACE}`);

  n.step("Install the reconciler with Helm, and give the app its database Secret");
  const shop = await setupShop(env);
  cleanups.push({
    what: "the reconciler's Helm release",
    run: async () => {
      await shop.stop();
      await shop.release.uninstall();
    },
  });
  const leader = await waitFor(() => shop.release.leader(), { what: "the reconciler to hold its Lease" });
  n.say(`helm install ${shop.release.name} charts/digest-migrations --namespace ${NAMESPACE}`);
  n.say(`the chart's objects are named ${shop.release.fullname}-reconciler`);
  n.say(`${(await shop.release.pods()).length} replicas of ${env.world.images.reconciler}`);
  n.say(`leader: ${leader}; waiter API at ${shop.release.waiterUrl} (host network: this node has no kube-proxy)`);
  n.say("the app's Secret myapp-db (DATABASE_URL) created, as an operator would, outside git");

  const watch = new ClusterWatch(env.kube, NAMESPACE, (line) => n.say(line), {
    podSelector: "!app.kubernetes.io/part-of",
  });
  watch.start();
  cleanups.push({ what: "watch", run: () => Promise.resolve(watch.stop()) });

  n.step(`CI builds v1 and pushes ${env.images.ref("app", "latest")}`);
  n.note("a real image: buildah builds e2e/apps/shop/Containerfile and pushes it to the node's registry");
  const v1 = await shop.push("v1");
  n.say(`latest -> ${shortDigest(v1)}  (v1 ships migration ${buildVersions("v1").join(", ")})`);

  n.step("Argo CD syncs the application (plugin generate in the plugin image, then server-side apply in sync waves)");
  const first = await shop.sync();
  for (const a of first.applied) n.say(`applied ${a.object.kind} ${a.object.metadata.name} (wave ${a.wave})`);
  n.note(`the plugin put init container migrate-wait-${MIGRATOR} first in ${DEPLOYMENT}'s pod template`);
  n.note("new pods wait in it; the reconciler resolves their digest on the node, migrates it once, then releases them");
  await shop.waitMigrated(v1);
  await shop.waitRolledOut(v1);
  await watch.poll();
  n.say(`both pods run ${shortDigest(v1)}; the database is at ${buildVersions("v1").at(-1)}`);

  n.step("Argo CD syncs again: git has not changed, so nothing happens");
  await shop.sync();
  await watch.poll();
  n.say(`no new pods, no Job; still ${shortDigest((await shop.migrator())?.status?.lastSuccessfulMigration)}`);

  n.step("CI pushes v2 to the same tag and restarts the Deployment (git still says :latest)");
  const v2 = await shop.push("v2");
  n.say(`latest -> ${shortDigest(v2)}  (v2 adds migration ${buildVersions("v2").at(-1)})`);
  await shop.restart();
  n.say(`kubectl rollout restart deployment/${DEPLOYMENT}`);
  await shop.waitMigrated(v2);
  await shop.waitRolledOut(v2);
  await watch.poll();
  n.say(`one more migration ran for ${shortDigest(v2)}; the old pods kept serving until the new ones were released`);

  n.step("Rollback: latest points at v1's digest again, and the Deployment restarts");
  await shop.retag(v1);
  n.say(`latest -> ${shortDigest(v1)} (a digest migrated before)`);
  await shop.restart();
  await shop.waitRolledOut(v1);
  await watch.poll();
  n.say("the pods were released at once: no Job, no migration (the schema stays at 0002; v1 only needs 0001)");
  watch.stop();

  n.step("What the database, the Migrator and the node's container runtime say");
  const h = await shop.history();
  const migrated = await shop.migratedDigests();
  await env.starts.settled();
  const appStarts = env.starts.starts.filter((s) => s.container === APP_CONTAINER);
  const rows = [
    { build: "v1", digest: v1 },
    { build: "v2", digest: v2 },
  ].map(({ build, digest }) => {
    const jobs = [...watch.jobsSeen.values()].filter((d) => d === digest).length;
    const runs = h.runs.filter((r) => r.digest === digest);
    const starts = h.starts.filter((s) => s.digest === digest);
    const containers = appStarts.filter((s) => s.repoDigests.some((d) => d.endsWith(`@${digest}`))).length;
    return [
      build,
      shortDigest(digest),
      migrated.includes(digest) ? "yes" : "no",
      String(jobs),
      String(runs.length),
      runs.flatMap((r) => r.applied).join(", ") || "-",
      `${starts.filter((s) => s.ok).length}/${starts.length}`,
      String(containers),
    ];
  });
  n.table(
    ["build", "digest", "recorded", "Jobs", "migration runs", "applied", "app starts ok", "containerd app starts"],
    rows,
  );
  n.raw("");
  n.say(
    `schema_migrations: ${h.migrations.map((m) => `${m.version} (${shortDigest(m.digest ?? undefined)})`).join(", ")}`,
  );
  const problems = [...historyProblems(h), ...(await shop.gatingProblems())];
  if (h.runs.length !== 2) problems.push(`expected 2 migration runs (v1, v2), found ${h.runs.length}`);
  if (problems.length > 0) throw new Error(`the story did not go as promised:\n  ${problems.join("\n  ")}`);
  n.say(
    `containerd started ${appStarts.length} app containers, each once, from the migrated digest its pod was pinned to.`,
  );
  n.say("every digest migrated exactly once, before any pod running it started; the rollback needed no migration.");
}

async function main(): Promise<number> {
  const n = new Narrator(STEPS);
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n${signal}: cleaning up…\n`);
    void cleanUp().then(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // An error no step awaited (a helper's background work) fails the demo the same way: said, cleaned up.
  const onStray = (err: unknown): void => {
    process.stderr.write(`\ndemo failed: ${errorText(err)}\n`);
    void cleanUp().then(() => process.exit(1));
  };
  process.on("uncaughtException", onStray);
  process.on("unhandledRejection", onStray);
  try {
    await story(n);
    n.raw("");
    n.say(`cleaning up (the Helm release, namespace ${NAMESPACE}, the database)…`);
    if (!(await cleanUp())) {
      process.stderr.write("\ndemo failed: cleaning up did not finish (see above)\n");
      return 1;
    }
    n.say("done.");
    return 0;
  } catch (err) {
    process.stderr.write(`\ndemo failed: ${errorText(err)}\n`);
    await cleanUp();
    return 1;
  }
}

process.exit(await main());
