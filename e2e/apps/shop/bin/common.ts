// What the shop's two commands (`migrate`, `app`) share: where the image's migrations are, which
// image they run from, and the bookkeeping tables the end-to-end tests read back.
//
//   schema_migrations  one row per applied migration (version, name, checksum, build that applied it)
//   migration_runs     one row per `migrate` run, inserted when it starts: the tests count runs per
//                      build (a duplicate migration is two rows for one image), and status tells
//                      succeeded / failed / running (a run that was killed stays "running")
//   app_starts         one row per `app` start: which build started, and whether it accepted the schema
//
// A process knows which image it runs from by the build id CI stamped into it (IMAGE_BUILD_ID, one
// per build, as CI stamps a build number): the tests know which digest each build id was pushed as.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import pg from "pg";

export interface MigrationFile {
  /** "0002" */
  version: string;
  /** "0002_add_price.sql" */
  name: string;
  sql: string;
  checksum: string;
}

/** The image's files: the process runs in the image's working directory (/app). */
export function imageDir(): string {
  return process.env.IMAGE_DIR || process.cwd();
}

/** The build id of the image this process runs from (IMAGE_BUILD_ID, set in the image at build time). */
export function imageBuildId(): string | undefined {
  return process.env.IMAGE_BUILD_ID || undefined;
}

/** The pod this process runs in: POD_NAME from the downward API (with hostNetwork, HOSTNAME is the node's). */
export function podName(): string | undefined {
  return process.env.POD_NAME || process.env.HOSTNAME || undefined;
}

/** The migrations this build ships, in version order. */
export function migrationFiles(dir = path.join(imageDir(), "migrations")): MigrationFile[] {
  const names = fs
    .readdirSync(dir)
    .filter((n) => /^\d{4}_[a-z0-9_]+\.sql$/.test(n))
    .sort();
  return names.map((name) => {
    const sql = fs.readFileSync(path.join(dir, name), "utf8");
    return { version: name.slice(0, 4), name, sql, checksum: createHash("sha256").update(sql).digest("hex") };
  });
}

export function databaseUrl(command: string): string {
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error(`${command}: DATABASE_URL is not set (the app's Secret myapp-db, key url)`);
    process.exit(2);
  }
  return url;
}

export async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  return client;
}

/** Lock key for schema changes: one `migrate` at a time per database, as real migration tools do. */
export const MIGRATION_LOCK = 7_351_244;

/** Creates the bookkeeping tables once; concurrent callers serialise on the migration lock. */
export async function ensureTables(client: pg.Client): Promise<void> {
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK + 1]);
    await client.query(`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        version text PRIMARY KEY,
        name text NOT NULL,
        checksum text NOT NULL,
        build_id text,
        applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
      );
      CREATE TABLE IF NOT EXISTS migration_runs (
        id serial PRIMARY KEY,
        build_id text,
        build text,
        pod text,
        status text NOT NULL DEFAULT 'running',
        applied text[] NOT NULL DEFAULT '{}',
        error text,
        started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        finished_at timestamptz
      );
      CREATE TABLE IF NOT EXISTS app_starts (
        id serial PRIMARY KEY,
        build_id text,
        build text,
        pod text,
        ok boolean NOT NULL,
        missing text[] NOT NULL DEFAULT '{}',
        started_at timestamptz NOT NULL DEFAULT clock_timestamp()
      );
    `);
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
