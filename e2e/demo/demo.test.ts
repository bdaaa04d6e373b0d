// `npm start` as a user runs it: the demo process from start to exit, in the world of this test run
// (DM_WORLD inherited, or the kept world). It must tell the whole story (every step, the final table:
// one Job and one migration run per digest, none for the rollback, every app container containerd
// started one of a migrated digest), exit 0, and leave nothing behind in the world — its namespace,
// the Helm release's cluster-wide RBAC and its database are gone.
import { spawn } from "node:child_process";
import path from "node:path";
import t from "tap";
import type { KubeObject } from "@digest-migrations/shared";
import type { ObjectList } from "../kit/client.ts";
import { world } from "../world/connect.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");

function run(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, "e2e/demo/demo.ts")], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

t.test("npm start tells the story, exits 0 and cleans up", async (t) => {
  const w = await world((fn) => t.teardown(fn));
  const { code, stdout, stderr } = await run();
  t.equal(code, 0, "exit 0", { stderr: stderr.slice(-3000), stdout: stdout.slice(-3000) });
  t.notMatch(stderr, /cleanup:|demo failed/, "no failure while telling or cleaning up");

  for (let step = 1; step <= 8; step++) t.match(stdout, new RegExp(`\\[${step}/8\\] `), `step ${step} is told`);
  t.match(stdout, /node \S+: Ready, kubelet v1\.20\.\d+, containerd:\/\//, "the real node is shown");
  t.match(
    stdout,
    /probe pod myapp-migrations-probe-[0-9a-f]+: /,
    "a probe pod is shown (how long it shows what the node pulled depends on the poll)",
  );
  t.match(stdout, /migration Job myapp-migrations-[0-9a-f]+ created for sha256:[0-9a-f]{12}/, "the Job is shown");
  t.match(stdout, /Migrator myapp-migrations: lastSuccessfulMigration = sha256:[0-9a-f]{12}/, "the record is shown");
  // build  digest  recorded  Jobs  migration runs  applied  app starts ok  containerd app starts
  const row = (build: string, applied: string): RegExp =>
    new RegExp(`^\\s*${build}\\s+sha256:[0-9a-f]{12}\\s+yes\\s+1\\s+1\\s+${applied}\\s+(\\d+)/(\\d+)\\s+(\\d+)$`, "m");
  for (const [build, applied] of [
    ["v1", "0001"],
    ["v2", "0002"],
  ] as const) {
    const m = row(build, applied).exec(stdout);
    t.ok(m, `${build}: recorded, one Job, one run`);
    t.equal(m?.[1], m?.[2], `${build}: every app start succeeded (each ran against its own schema)`);
    t.equal(m?.[3], m?.[2], `${build}: containerd started one app container per app start`);
    t.ok(Number(m?.[2]) >= 2, `${build}: two pods ran it`);
  }
  t.match(stdout, /the rollback needed no migration/);
  t.match(stdout, /done\.$/m);

  const namespace = /namespace (shop-demo-[0-9a-f]+)$/m.exec(stdout)?.[1];
  const release = /objects are named (\S+)-reconciler$/m.exec(stdout)?.[1];
  const database = /database (\S+)$/m.exec(stdout)?.[1];
  if (namespace === undefined || release === undefined || database === undefined) {
    throw new Error(`the demo no longer prints its namespace, release and database:\n${stdout.slice(0, 3000)}`);
  }
  t.equal(await w.kube.find(`/api/v1/namespaces/${namespace}`), undefined, `namespace ${namespace} is gone`);
  // The demo's install watches its namespace only: Roles there (gone with it), nothing cluster-scoped.
  for (const plural of ["clusterroles", "clusterrolebindings"]) {
    const list = await w.kube.get<ObjectList<KubeObject>>(`/apis/rbac.authorization.k8s.io/v1/${plural}`);
    t.same(
      list.items.map((o) => o.metadata.name).filter((n) => n?.startsWith(`${release}-`)),
      [],
      `no ${plural} of the release are left`,
    );
  }
  const left = await w.postgres.query("postgres", "SELECT datname FROM pg_database WHERE datname = $1", [database]);
  t.same(left, [], `database ${database} is dropped`);
});
