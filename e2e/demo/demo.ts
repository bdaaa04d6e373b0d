// `npm start`: the story of digest-keyed migrations, told on a real local control plane.
//
// A Deployment says `image: registry.example/app:latest`; CI keeps overwriting `latest`; git never
// changes. Watch the database get migrated exactly once per digest that lands, before any pod
// running that digest starts — and not at all when an old digest comes back.
//
// Everything runs on this machine: etcd, kube-apiserver and kube-controller-manager 1.20.2 (built
// once, ~10 minutes, the first time), PostgreSQL, a node emulator playing the kubelet, the
// plugin's bundle as Argo CD runs it, and the reconciler's bundle. Everything is removed at the
// end, also on Ctrl-C or failure. DM_KEEP_LOGS=1 keeps the reconciler's log.
import { startCluster } from "../cluster/cluster.ts";
import type { Cluster } from "../cluster/cluster.ts";
import type { TestEnv } from "../harness/env.ts";
import { errorText } from "../kit/wait.ts";
import { KubeClient } from "../kit/client.ts";
import { NodeEmulator } from "../node/emulator.ts";
import { Registry } from "../node/registry.ts";
import { startPostgres } from "../postgres/postgres.ts";
import type { Postgres } from "../postgres/postgres.ts";
import { DEPLOYMENT, MIGRATOR, buildVersions } from "../apps/shop/builds.ts";
import { historyProblems } from "../apps/shop/database.ts";
import { setupShop } from "../pipeline/stack.ts";
import type { Shop } from "../pipeline/stack.ts";
import { Narrator, shortDigest } from "./narrator.ts";
import { ClusterWatch } from "./watch.ts";

const NAMESPACE = "apps";
const STEPS = 8;

/** Undo steps; `fast` after Ctrl-C: kill rather than shut down gracefully. */
const cleanups: { what: string; run: (fast: boolean) => Promise<unknown> }[] = [];
let cleaning: Promise<boolean> | undefined;

/**
 * Undoes everything started so far, newest first; each step on its own, so one failure stops nothing.
 * Resolves to false when any step failed (each failure is printed).
 */
function cleanUp(fast = false): Promise<boolean> {
  cleaning ??= (async () => {
    let clean = true;
    for (const c of cleanups.reverse()) {
      try {
        await c.run(fast);
      } catch (err) {
        clean = false;
        process.stderr.write(`cleanup: ${c.what}: ${errorText(err)}\n`);
      }
    }
    return clean;
  })();
  return cleaning;
}

async function story(n: Narrator): Promise<void> {
  n.raw("digest-migrations: database migrations once per image digest, before the pods that run it.");
  n.raw("A Deployment says image: registry.example/app:latest. CI overwrites latest; git stays the same.");

  n.step("Start a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager 1.20.2)");
  n.note("The first run builds the control plane from source once (about 10 minutes); later runs take seconds.");
  const cluster: Cluster = await startCluster({
    log: (line) => {
      if (/^\[(build\.sh|cluster)/.test(line)) n.say(line.trim());
    },
  });
  cleanups.push({ what: "control plane", run: () => cluster.stop() });
  n.say(`API server at ${cluster.server}`);

  n.step("Start PostgreSQL, a node, and the reconciler");
  const postgres: Postgres = await startPostgres();
  cleanups.push({ what: "PostgreSQL", run: () => postgres.stop() });
  const database = await postgres.createDatabase("shop");
  n.say(`PostgreSQL on 127.0.0.1:${postgres.port}, database ${database.name}`);
  const kube = KubeClient.fromFile(cluster.adminKubeconfig);
  await cluster.ensureNamespace(NAMESPACE);
  const registry = new Registry();
  const node = await NodeEmulator.start({ client: kube, registry, namespaces: [NAMESPACE], nodes: ["node-1"] });
  cleanups.push({ what: "node emulator", run: (fast) => node.stop({ deleteNodes: !fast }) });
  n.say("node node-1 is Ready (an emulated kubelet: containers are local processes)");
  const env: TestEnv = {
    cluster: {
      server: cluster.server,
      adminKubeconfig: cluster.adminKubeconfig,
      kubeconfigFor: (ns, sa) => cluster.kubeconfigFor(ns, sa),
      ensureNamespace: (ns) => cluster.ensureNamespace(ns),
      stop: () => cluster.stop(),
      owned: true,
    },
    kube,
    namespace: NAMESPACE,
    registry,
    node,
    nodeNames: ["node-1"],
    nodeName: (s) => s,
    postgres,
    database,
    log: () => {},
  };
  const shop: Shop = await setupShop(env);
  cleanups.push({
    what: "reconciler",
    run: async (fast) => {
      if (fast) await Promise.all(shop.reconcilers.map((r) => r.kill("SIGKILL")));
      await shop.stop();
    },
  });
  n.say("Migrator CRD and the reconciler's RBAC installed from reconciler/deploy/");
  n.say(`reconciler running as ServiceAccount digest-migrations-reconciler, waiter API at ${shop.service.url}`);
  n.say("the app's Secret myapp-db (DATABASE_URL) created, as an operator would, outside git");

  const watch = new ClusterWatch(kube, NAMESPACE, (line) => n.say(line));
  watch.start();
  cleanups.push({ what: "watch", run: () => Promise.resolve(watch.stop()) });

  n.step("CI builds v1 and pushes registry.example/app:latest");
  const v1 = shop.push("v1");
  n.say(`latest -> ${shortDigest(v1)}  (v1 ships migration ${buildVersions("v1").join(", ")})`);

  n.step("Argo CD syncs the application (plugin generate, then server-side apply in sync waves)");
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
  const v2 = shop.push("v2");
  n.say(`latest -> ${shortDigest(v2)}  (v2 adds migration ${buildVersions("v2").at(-1)})`);
  await shop.restart();
  n.say("kubectl rollout restart deployment/myapp");
  await shop.waitMigrated(v2);
  await shop.waitRolledOut(v2);
  await watch.poll();
  n.say(`one more migration ran for ${shortDigest(v2)}; the old pods kept serving until the new ones were released`);

  n.step("Rollback: latest points at v1's digest again, and the Deployment restarts");
  shop.retag(v1);
  n.say(`latest -> ${shortDigest(v1)} (a digest migrated before)`);
  await shop.restart();
  await shop.waitRolledOut(v1);
  await watch.poll();
  n.say("the pods were released at once: no Job, no migration (the schema stays at 0002; v1 only needs 0001)");
  watch.stop();

  n.step("What the database and the Migrator say");
  const h = await shop.history();
  const migrated = await shop.migratedDigests();
  const rows = [
    { build: "v1", digest: v1 },
    { build: "v2", digest: v2 },
  ].map(({ build, digest }) => {
    const jobs = [...watch.jobsSeen.values()].filter((d) => d === digest).length;
    const runs = h.runs.filter((r) => r.digest === digest);
    const starts = h.starts.filter((s) => s.digest === digest);
    return [
      build,
      shortDigest(digest),
      migrated.includes(digest) ? "yes" : "no",
      String(jobs),
      String(runs.length),
      runs.flatMap((r) => r.applied).join(", ") || "-",
      `${starts.filter((s) => s.ok).length}/${starts.length}`,
    ];
  });
  n.table(["build", "digest", "recorded", "Jobs", "migration runs", "applied", "app starts ok"], rows);
  n.raw("");
  n.say(
    `schema_migrations: ${h.migrations.map((m) => `${m.version} (${shortDigest(m.digest ?? undefined)})`).join(", ")}`,
  );
  const problems = [...historyProblems(h), ...(await shop.gatingProblems())];
  if (h.runs.length !== 2) problems.push(`expected 2 migration runs (v1, v2), found ${h.runs.length}`);
  if (problems.length > 0) throw new Error(`the story did not go as promised:\n  ${problems.join("\n  ")}`);
  n.say("every digest migrated exactly once, before any pod running it started; the rollback needed no migration.");
}

async function main(): Promise<number> {
  const n = new Narrator(STEPS);
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n${signal}: cleaning up…\n`);
    void cleanUp(true).then(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    await story(n);
    n.raw("");
    n.say("cleaning up (processes, temporary directories)…");
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
