// What the shop's database says happened, for assertions: migrations applied (in order, once each),
// migration runs per digest, and app starts. Reads over a short-lived connection. The rows name the
// build id the image carries; `digestOf` (the pushes the test made) turns it into the digest.
import pg from "pg";

export interface AppliedMigration {
  version: string;
  name: string;
  buildId: string | null;
  digest: string | null;
  appliedAt: Date;
}

export interface MigrationRun {
  id: number;
  buildId: string | null;
  digest: string | null;
  build: string | null;
  pod: string | null;
  status: "running" | "succeeded" | "failed";
  applied: string[];
  error: string | null;
  startedAt: Date;
  finishedAt: Date | null;
}

export interface AppStart {
  id: number;
  buildId: string | null;
  digest: string | null;
  build: string | null;
  pod: string | null;
  ok: boolean;
  missing: string[];
  startedAt: Date;
}

export interface ShopHistory {
  migrations: AppliedMigration[];
  runs: MigrationRun[];
  starts: AppStart[];
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Which digest a build id was pushed as (undefined: not a push of this test). */
export type DigestOfBuild = (buildId: string) => string | undefined;

/** Everything recorded so far; empty lists before the first `migrate`/`app` created the tables. A
 *  build id no push of this test made is reported as `build <id>` in place of a digest. */
export function readHistory(url: string, digestOf: DigestOfBuild): Promise<ShopHistory> {
  const withDigest = <R extends { buildId: string | null; digest: string | null }>(rows: R[]): R[] =>
    rows.map((r) => ({ ...r, digest: r.buildId === null ? null : (digestOf(r.buildId) ?? `build ${r.buildId}`) }));
  return withClient(url, async (c) => {
    const exists = await c.query<{ n: string }>(
      "SELECT count(*) AS n FROM information_schema.tables WHERE table_name IN ('schema_migrations', 'migration_runs', 'app_starts')",
    );
    if (Number(exists.rows[0]?.n ?? 0) < 3) return { migrations: [], runs: [], starts: [] };
    const migrations = await c.query<AppliedMigration>(
      'SELECT version, name, build_id AS "buildId", applied_at AS "appliedAt" FROM schema_migrations ORDER BY applied_at, version',
    );
    const runs = await c.query<MigrationRun>(
      'SELECT id, build_id AS "buildId", build, pod, status, applied, error, started_at AS "startedAt", finished_at AS "finishedAt" FROM migration_runs ORDER BY id',
    );
    const starts = await c.query<AppStart>(
      'SELECT id, build_id AS "buildId", build, pod, ok, missing, started_at AS "startedAt" FROM app_starts ORDER BY id',
    );
    return {
      migrations: withDigest(migrations.rows),
      runs: withDigest(runs.rows),
      starts: withDigest(starts.rows),
    };
  });
}

/** Runs per digest (a digest with more than one run was migrated twice). */
export function runsByDigest(runs: MigrationRun[]): Map<string, MigrationRun[]> {
  const out = new Map<string, MigrationRun[]>();
  for (const r of runs) {
    const key = r.digest ?? "(unknown)";
    out.set(key, [...(out.get(key) ?? []), r]);
  }
  return out;
}

/**
 * Problems with the history, as sentences (empty = consistent): migrations applied out of order or
 * more than once is impossible by the primary key, so this checks what the product promises — every
 * app start accepted its schema, and no digest has more than `maxRunsPerDigest` runs (1 unless the
 * test retried a failure on purpose).
 */
export function historyProblems(h: ShopHistory, opts: { maxRunsPerDigest?: number } = {}): string[] {
  const problems: string[] = [];
  const max = opts.maxRunsPerDigest ?? 1;
  const versions = h.migrations.map((m) => m.version);
  const sorted = [...versions].sort();
  if (versions.join(",") !== sorted.join(",")) problems.push(`migrations applied out of order: ${versions.join(", ")}`);
  for (const [digest, runs] of runsByDigest(h.runs)) {
    if (runs.length > max) problems.push(`${runs.length} migration runs for ${digest} (at most ${max} expected)`);
  }
  for (const s of h.starts) {
    if (!s.ok) problems.push(`app in pod ${s.pod} (${s.digest}) started before migrations ${s.missing.join(", ")}`);
  }
  return problems;
}
