// The shop's commands on their own, against a real PostgreSQL: each build's migrations are laid out
// in a directory as the image has them under /app, and `migrate` / `app` run there (from source,
// with this Node.js) with the build id the image would carry.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { startPostgres } from "../../postgres/postgres.ts";
import { APP_SCRIPT, MIGRATE_SCRIPT, buildVersions, writeMigrations } from "./builds.ts";
import type { BuildName } from "./builds.ts";
import { historyProblems, readHistory } from "./database.ts";
import { waitFor } from "../../kit/wait.ts";

const pgServer = await startPostgres();
t.teardown(() => pgServer.stop());
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "dm-shop-"));
t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** A build's files as the image has them, in a directory of their own. */
function image(build: BuildName): string {
  const dir = fs.mkdtempSync(path.join(scratch, `${build}-`));
  writeMigrations(build, dir);
  return dir;
}

interface Run {
  code: number | null;
  output: string;
}

const SCRIPTS = { migrate: MIGRATE_SCRIPT, app: APP_SCRIPT };

/** The environment the image and its pod give a command. */
function commandEnv(build: BuildName, url: string, buildId: string, pod: string): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, POD_NAME: pod, DATABASE_URL: url, APP_BUILD: build, IMAGE_BUILD_ID: buildId };
}

function run(build: BuildName, command: "migrate" | "app", url: string, buildId: string, extraEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SCRIPTS[command]], {
      cwd: image(build),
      env: { ...commandEnv(build, url, buildId, `pod-${command}`), ...extraEnv },
    });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code, output }));
  });
}

/** Build n was pushed as this digest. */
const digest = (n: number): string => `sha256:${String(n).padStart(64, "0")}`;
const buildId = (n: number): string => `build-${n}`;
const digestOf = (buildId: string): string | undefined => digest(Number(buildId.slice("build-".length)));

t.test("builds migrate in order, once each; each run is recorded with its digest", async (t) => {
  const db = await pgServer.createDatabase("shop_order");
  for (const [i, build] of (["v1", "v2", "v3"] as const).entries()) {
    const r = await run(build, "migrate", db.url, buildId(i + 1));
    t.equal(r.code, 0, `${build} migrates: ${r.output}`);
  }
  const again = await run("v3", "migrate", db.url, buildId(3));
  t.equal(again.code, 0, "a second run of the same build is a no-op");
  const h = await readHistory(db.url, digestOf);
  t.same(
    h.migrations.map((m) => [m.version, m.digest]),
    [
      ["0001", digest(1)],
      ["0002", digest(2)],
      ["0003", digest(3)],
    ],
  );
  t.same(
    h.runs.map((r) => [r.digest, r.status, r.applied]),
    [
      [digest(1), "succeeded", ["0001"]],
      [digest(2), "succeeded", ["0002"]],
      [digest(3), "succeeded", ["0003"]],
      [digest(3), "succeeded", []],
    ],
  );
  t.same(historyProblems(h, { maxRunsPerDigest: 2 }), []);
  t.match(historyProblems(h), [/2 migration runs for sha256:0+3/]);
});

t.test("app refuses to start before its migrations, starts after; an older build accepts a newer schema", async (t) => {
  const db = await pgServer.createDatabase("shop_app");
  const refused = await run("v2", "app", db.url, buildId(2));
  t.equal(refused.code, 1);
  t.match(refused.output, /refusing to start: migrations 0001, 0002 are not applied/);
  t.equal((await run("v3", "migrate", db.url, buildId(3))).code, 0);

  const child = spawn(process.execPath, [APP_SCRIPT], {
    cwd: image("v2"),
    env: commandEnv("v2", db.url, buildId(2), "pod-rollback"),
  });
  let output = "";
  child.stdout.on("data", (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  await waitFor(() => output.includes("is open"), { what: "app v2 to open", timeoutMs: 10_000 });
  child.kill("SIGTERM");
  t.equal(await exited, 0, "exits 0 on SIGTERM");
  const h = await readHistory(db.url, digestOf);
  t.same(
    h.starts.map((s) => [s.build, s.ok, s.missing]),
    [
      ["v2", false, ["0001", "0002"]],
      ["v2", true, []],
    ],
  );
});

t.test("a broken migration rolls back and fails; the fixed build applies it", async (t) => {
  const db = await pgServer.createDatabase("shop_broken");
  t.equal((await run("v3", "migrate", db.url, buildId(3))).code, 0);
  const broken = await run("broken", "migrate", db.url, buildId(4));
  t.equal(broken.code, 1);
  t.match(broken.output, /FAILED 0004_add_sku\.sql: column "skew" does not exist/);
  const columns = await pgServer.query(
    db.name,
    "SELECT column_name FROM information_schema.columns WHERE table_name = 'products' AND column_name = 'sku'",
  );
  t.same(columns, [], "the failed migration's transaction left no column behind");
  t.equal((await run("fixed", "migrate", db.url, buildId(5))).code, 0);
  const h = await readHistory(db.url, digestOf);
  t.same(
    h.runs.map((r) => [r.digest, r.status]),
    [
      [digest(3), "succeeded"],
      [digest(4), "failed"],
      [digest(5), "succeeded"],
    ],
  );
  t.match(h.runs[1]?.error, /0004_add_sku\.sql/);
  t.same(
    h.migrations.map((m) => m.version),
    buildVersions("fixed"),
  );
});

t.test("concurrent runs serialise on the migration lock: each migration applied once", async (t) => {
  const db = await pgServer.createDatabase("shop_concurrent");
  const results = await Promise.all([1, 2, 3].map((i) => run("v3", "migrate", db.url, buildId(10 + i))));
  t.same(
    results.map((r) => r.code),
    [0, 0, 0],
  );
  const h = await readHistory(db.url, digestOf);
  t.same(
    h.migrations.map((m) => m.version),
    ["0001", "0002", "0003"],
  );
  t.equal(h.runs.length, 3, "every run is recorded");
  t.same(h.runs.flatMap((r) => r.applied).sort(), ["0001", "0002", "0003"], "together they applied each once");
});
