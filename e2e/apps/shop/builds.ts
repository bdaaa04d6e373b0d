// The shop's "images": what CI builds and pushes to registry.example/app:latest. A build is its SQL
// migrations (cumulative: v2 ships v1's and its own) and two commands, `migrate` and `app`, both
// small Node programs run with this Node binary. The image's ENTRYPOINT is `app`; the Migrator
// overrides the command with `migrate`.
//
//   const digest = pushBuild(env.registry, "v2");            // CI pushes a new latest
//   const slow = pushBuild(env.registry, "v3", { migrateSleepMs: 3000 });
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ImageContent, Registry } from "../../node/registry.ts";

const here = path.dirname(fileURLToPath(import.meta.url));

/** The image the application's Deployment names (a mutable tag on purpose). */
export const APP_IMAGE = "registry.example/app:latest";
export const APP_REPOSITORY = "registry.example/app";
export const APP_TAG = "latest";

/** The application's source directory, as Argo CD would check it out (plain YAML). */
export const MANIFESTS_DIR = path.join(here, "manifests");
export const DEPLOYMENT = "myapp";
export const MIGRATOR = "myapp-migrations";
export const APP_CONTAINER = "app";
/** The app's Secret holding the database URL (provisioned out of band, never in git). */
export const DATABASE_SECRET = "myapp-db";

export const MIGRATE_SCRIPT = path.join(here, "bin", "migrate.ts");
export const APP_SCRIPT = path.join(here, "bin", "app.ts");

export type BuildName = "v1" | "v2" | "v3" | "broken" | "fixed";
export const BUILD_NAMES: readonly BuildName[] = ["v1", "v2", "v3", "broken", "fixed"];

/** Which migration files each build ships, relative to this directory, in order. */
const BUILD_FILES: Record<BuildName, string[]> = {
  v1: ["migrations/0001_create_products.sql"],
  v2: ["migrations/0001_create_products.sql", "migrations/0002_add_price.sql"],
  v3: ["migrations/0001_create_products.sql", "migrations/0002_add_price.sql", "migrations/0003_create_orders.sql"],
  broken: [
    "migrations/0001_create_products.sql",
    "migrations/0002_add_price.sql",
    "migrations/0003_create_orders.sql",
    "migrations-broken/0004_add_sku.sql",
  ],
  fixed: [
    "migrations/0001_create_products.sql",
    "migrations/0002_add_price.sql",
    "migrations/0003_create_orders.sql",
    "migrations-fixed/0004_add_sku.sql",
  ],
};

/** The migration versions a build ships ("0001", …), in order. */
export function buildVersions(build: BuildName): string[] {
  return BUILD_FILES[build].map((f) => path.basename(f).slice(0, 4));
}

export interface BuildOptions {
  /** A slow migration: the first pending migration's transaction stays open this long. */
  migrateSleepMs?: number;
}

/** The image content of a build, for the node emulator's registry. */
export function buildImage(build: BuildName, opts: BuildOptions = {}): ImageContent {
  const files: Record<string, string> = { BUILD: `${build}\n` };
  for (const rel of BUILD_FILES[build]) {
    files[`migrations/${path.basename(rel)}`] = fs.readFileSync(path.join(here, rel), "utf8");
  }
  return {
    files,
    commands: {
      migrate: [process.execPath, MIGRATE_SCRIPT],
      app: [process.execPath, APP_SCRIPT],
    },
    entrypoint: ["app"],
    env: {
      APP_BUILD: build,
      ...(opts.migrateSleepMs ? { MIGRATE_SLEEP_MS: String(opts.migrateSleepMs) } : {}),
    },
  };
}

/** CI's push: `build` becomes registry.example/app:latest; returns the new digest. */
export function pushBuild(registry: Registry, build: BuildName, opts: BuildOptions = {}): string {
  return registry.push(APP_REPOSITORY, APP_TAG, buildImage(build, opts));
}

/** A rollback push: latest points at an earlier digest again. */
export function retagLatest(registry: Registry, digest: string): void {
  registry.tag(APP_REPOSITORY, APP_TAG, digest);
}

/** The app's database Secret (`url` key), as an operator provisions it outside git. */
export function databaseSecret(namespace: string, url: string): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: DATABASE_SECRET, namespace },
    type: "Opaque",
    stringData: { url },
  };
}
