// The shop's `migrate` command: applies the build's pending migrations in version order, each in its
// own transaction, and records every run in migration_runs (inserted first, so a run that is killed
// still counts). One run at a time per database (advisory lock), like real migration tools.
//
// Environment: DATABASE_URL (required), APP_BUILD and IMAGE_BUILD_ID (the build, for the record), MIGRATE_SLEEP_MS
// (a slow migration: the first pending migration's transaction stays open this long before commit).
// Exit 0 when the schema is up to date, 1 when a migration failed (its transaction rolled back).
import {
  MIGRATION_LOCK,
  connect,
  databaseUrl,
  ensureTables,
  errorText,
  imageBuildId,
  podName,
  migrationFiles,
  sleep,
} from "./common.ts";

async function main(): Promise<number> {
  const url = databaseUrl("migrate");
  const buildId = imageBuildId() ?? null;
  const build = process.env.APP_BUILD ?? null;
  const pod = podName() ?? null;
  const sleepMs = Number(process.env.MIGRATE_SLEEP_MS ?? "0") || 0;
  const files = migrationFiles();
  const client = await connect(url);
  try {
    await ensureTables(client);
    const run = await client.query<{ id: number }>(
      "INSERT INTO migration_runs (build_id, build, pod) VALUES ($1, $2, $3) RETURNING id",
      [buildId, build, pod],
    );
    const runId = run.rows[0]?.id;
    console.log(`migrate: run ${runId} of build ${build ?? "?"} (${buildId ?? "build id unknown"})`);
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    const applied = new Map(
      (
        await client.query<{ version: string; checksum: string }>("SELECT version, checksum FROM schema_migrations")
      ).rows.map((r) => [r.version, r.checksum]),
    );
    const done: string[] = [];
    let slept = false;
    for (const file of files) {
      const known = applied.get(file.version);
      if (known !== undefined) {
        if (known !== file.checksum)
          console.log(`migrate: ${file.name} was applied with different content; left as is`);
        continue;
      }
      await client.query("BEGIN");
      try {
        if (!slept && sleepMs > 0) {
          slept = true;
          console.log(`migrate: ${file.name}: slow migration, ${sleepMs} ms`);
          await sleep(sleepMs);
        }
        await client.query(file.sql);
        await client.query(
          "INSERT INTO schema_migrations (version, name, checksum, build_id) VALUES ($1, $2, $3, $4)",
          [file.version, file.name, file.checksum, buildId],
        );
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK");
        const message = `${file.name}: ${errorText(err)}`;
        console.error(`migrate: FAILED ${message} (rolled back; applied before it: ${done.join(", ") || "none"})`);
        await client.query(
          "UPDATE migration_runs SET status = 'failed', applied = $2, error = $3, finished_at = clock_timestamp() WHERE id = $1",
          [runId, done, message],
        );
        return 1;
      }
      done.push(file.version);
      console.log(`migrate: applied ${file.name}`);
    }
    if (!slept && sleepMs > 0) await sleep(sleepMs);
    await client.query(
      "UPDATE migration_runs SET status = 'succeeded', applied = $2, finished_at = clock_timestamp() WHERE id = $1",
      [runId, done],
    );
    const latest = files.at(-1)?.version ?? "none";
    console.log(`migrate: schema up to date at ${latest} (${done.length} applied by this run)`);
    return 0;
  } finally {
    await client.end().catch(() => undefined);
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`migrate: ${errorText(err)}`);
    process.exit(1);
  },
);
