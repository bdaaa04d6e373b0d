// What `kubectl get` and `kubectl describe` show of a Migrator, with the real kubectl against the
// CRD's printer columns: the short digest, Ready and its reason by default; the full digest and the
// Job with -o wide; the conditions and the Events of the transitions in describe. The reconciler is
// the chart's default install (two replicas, leader election); what it shows is the leader's writing.
import t from "tap";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { CONDITION_MIGRATIONS_READY, CONDITION_READY } from "@digest-migrations/shared";
import { tools } from "../../plugin/test/tools.ts";
import { waitFor } from "../kit/wait.ts";
import { appDeployment, appImage, describeMigrator, reconcilerEnv } from "./setup.ts";
import type { ReconcilerEnv } from "./setup.ts";

const run = promisify(execFile);

async function kubectl(env: ReconcilerEnv, ...args: string[]): Promise<string> {
  const { stdout } = await run(tools().kubectl, ["--kubeconfig", env.cluster.adminKubeconfig, ...args], {
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", HOME: process.env["HOME"] ?? "/root" },
  });
  return stdout;
}

/** The rows of kubectl's table output, split into columns (two or more spaces apart). */
function table(text: string): string[][] {
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => line.trim().split(/\s{2,}/));
}

t.test("kubectl get and describe a Migrator", async (t) => {
  const env = await reconcilerEnv(t, { release: { replicas: 2 } });
  const d1 = await env.push(appImage("v1"));
  await env.migrator("db", { selector: { matchLabels: { app: "web" } }, command: ["migrate"] });
  await env.kube.createObject(appDeployment(env, "web", { migrator: "db" }));
  const m = await waitFor(
    async () => {
      const current = await env.getMigrator("db");
      const ready = current?.status?.conditions?.find((c) => c.type === CONDITION_READY);
      return current?.status?.lastSuccessfulMigration === d1 && ready?.reason === "Succeeded" ? current : undefined;
    },
    { what: "Migrator db to say Succeeded for D1", timeoutMs: 120_000, describe: () => describeMigrator(env, "db") },
  );
  await env.waitEvents("Succeeded");
  const job = m.status?.currentJob;
  t.ok(job, "the status names the Job");
  const jobs = await env.jobs();
  t.same(
    jobs.map((j) => j.metadata.name),
    [job],
    "the Job that ran D1",
  );
  const short = `sha256:${d1.slice("sha256:".length, "sha256:".length + 12)}`;

  const get = table(await kubectl(env, "get", "migrators", "-n", env.namespace));
  t.same(get[0], ["NAME", "DIGEST", "READY", "REASON", "AGE"], "the default columns");
  t.equal(get.length, 2, "one row");
  t.same(get[1]?.slice(0, 4), ["db", short, "True", "Succeeded"], "the short digest, Ready and its reason");
  t.match(get[1]?.[4], /^\d+[smhd]/, "an age");

  const wide = table(await kubectl(env, "get", "migrators", "-n", env.namespace, "-o", "wide"));
  t.same(
    wide[0],
    ["NAME", "DIGEST", "READY", "REASON", "AGE", "LAST MIGRATION", "JOB", "DEADLINE"],
    "-o wide adds the full digest, the Job and the Job's deadline",
  );
  t.same(wide[1]?.slice(0, 4), ["db", short, "True", "Succeeded"], "the default columns first");
  // No deadline is set: kubectl leaves an integer column empty, so the row ends with the Job.
  t.same(wide[1]?.slice(5), [d1, job], "the full digest and the Job's name, DEADLINE empty");

  const describe = await kubectl(env, "describe", "migrator", "db", "-n", env.namespace);
  const conditions = conditionBlocks(describe);
  for (const type of [CONDITION_READY, CONDITION_MIGRATIONS_READY]) {
    t.match(
      conditions.find((c) => c["Type"] === type),
      { Status: "True", Reason: "Succeeded", Message: new RegExp(`${d1} is migrated`) },
      `describe shows condition ${type} True, Succeeded`,
    );
  }
  const events = section(describe, "Events:")
    .map((line) => line.trim().split(/\s{2,}/))
    .filter((row) => row[0] === "Normal" || row[0] === "Warning");
  const succeeded = events.filter((row) => row[1] === "Succeeded");
  t.ok(succeeded.length >= 1, "describe lists the Succeeded Event");
  t.equal(succeeded[0]?.[3], "digest-migrations", "from the reconciler");
  t.match(succeeded[0]?.[4], `${d1} is migrated (Job ${job})`, "with what happened");
});

/** The lines of a top-level section of `kubectl describe` (after `header`, until the next top-level line). */
function section(text: string, header: string): string[] {
  const lines = text.split("\n");
  const start = lines.findIndex((line) => line === header);
  if (start < 0) return [];
  const end = lines.findIndex((line, i) => i > start && /^\S/.test(line));
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

/**
 * The conditions `kubectl describe` prints under `Status:` / `Conditions:`, one record per condition:
 * a condition ends where one of its keys repeats.
 */
function conditionBlocks(text: string): Record<string, string>[] {
  const status = section(text, "Status:");
  const start = status.findIndex((line) => line.trim() === "Conditions:");
  if (start < 0) return [];
  const indent = status[start]!.search(/\S/);
  const blocks: Record<string, string>[] = [];
  let current: Record<string, string> | undefined;
  for (const line of status.slice(start + 1)) {
    if (line.search(/\S/) <= indent) break;
    const m = /^\s*([A-Z][A-Za-z ]*):\s+(.*)$/.exec(line);
    if (m === null) continue;
    const [, key = "", value = ""] = m;
    if (current === undefined || key in current) {
      current = {};
      blocks.push(current);
    }
    current[key] = value;
  }
  return blocks;
}
