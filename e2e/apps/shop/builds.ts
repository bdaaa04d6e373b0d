// The shop's builds: what CI builds from e2e/apps/shop/Containerfile and pushes as app:latest. A
// build is its SQL migrations (cumulative: v2 ships v1's and its own) and two commands, `migrate`
// and `app`, small Node programs bundled into the image. The image's ENTRYPOINT is `app`; the
// Migrator overrides the command with `migrate`.
//
//   const digest = await pushBuild(env.images, "v2");              // CI pushes a new latest
//   const slow = await pushBuild(env.images, "v3", { migrateSleepMs: 3000 });
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { bundle } from "../../../scripts/bundle.ts";
import type { AppImages } from "../../world/app-images.ts";

const here = path.dirname(fileURLToPath(import.meta.url));

/** The image the application's Deployment names in git (a mutable tag on purpose). */
export const GIT_IMAGE = "127.0.0.1:5000/shop/app:latest";
/** The repository and tag CI pushes, under the test's own prefix in the node's registry. */
export const APP_REPOSITORY = "app";
export const APP_TAG = "latest";

/** The application's source directory, as its repository has it (plain YAML). */
export const MANIFESTS_DIR = path.join(here, "manifests");
export const CONTAINERFILE = path.join(here, "Containerfile");
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

/** Writes a build's migrations into `dir`/migrations (as the image has them under /app). */
export function writeMigrations(build: BuildName, dir: string): void {
  fs.mkdirSync(path.join(dir, "migrations"), { recursive: true });
  for (const rel of BUILD_FILES[build])
    fs.copyFileSync(path.join(here, rel), path.join(dir, "migrations", path.basename(rel)));
}

export interface BuildOptions {
  /** A slow migration: the first pending migration's transaction stays open this long. */
  migrateSleepMs?: number;
}

let bundled: Promise<string> | undefined;

/** The two commands bundled once per process (esbuild, `pg` included): a directory with migrate.mjs and app.mjs. */
function commandBundles(): Promise<string> {
  bundled ??= (async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dm-shop-lib-"));
    await Promise.all([
      bundle(MIGRATE_SCRIPT, path.join(dir, "migrate.mjs"), { sourcemap: false }),
      bundle(APP_SCRIPT, path.join(dir, "app.mjs"), { sourcemap: false }),
    ]);
    return dir;
  })();
  return bundled;
}

/** CI's build and push: `build` becomes app:latest; returns the new digest. */
export async function pushBuild(images: AppImages, build: BuildName, opts: BuildOptions = {}): Promise<string> {
  const context = fs.mkdtempSync(path.join(os.tmpdir(), `dm-shop-${build}-`));
  try {
    const lib = await commandBundles();
    fs.mkdirSync(path.join(context, "lib"));
    for (const f of ["migrate.mjs", "app.mjs"]) fs.copyFileSync(path.join(lib, f), path.join(context, "lib", f));
    fs.cpSync(path.join(here, "image"), path.join(context, "bin"), { recursive: true });
    writeMigrations(build, context);
    const pushed = await images.pushContext(APP_REPOSITORY, APP_TAG, context, CONTAINERFILE, undefined, {
      BUILD: build,
      MIGRATE_SLEEP_MS: String(opts.migrateSleepMs ?? 0),
    });
    return pushed.digest;
  } finally {
    fs.rmSync(context, { recursive: true, force: true });
  }
}

/** A rollback push: latest points at an earlier digest again. */
export function retagLatest(images: AppImages, digest: string): Promise<void> {
  return images.tag(APP_REPOSITORY, APP_TAG, digest);
}

/**
 * The team's repository as this test's Argo CD checks it out: the manifests, with git's image
 * repository replaced by the test's own in the node's registry (every test is its own team, so
 * parallel tests never share a tag). Returns the checkout's directory.
 */
export function checkout(images: AppImages, dir: string, source = MANIFESTS_DIR): string {
  const gitRepository = GIT_IMAGE.slice(0, GIT_IMAGE.lastIndexOf(":"));
  fs.cpSync(source, dir, { recursive: true });
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !/\.ya?ml$/.test(entry.name)) continue;
    const file = path.join(entry.parentPath, entry.name);
    const text = fs.readFileSync(file, "utf8");
    fs.writeFileSync(file, text.replaceAll(gitRepository, images.repository(APP_REPOSITORY)));
  }
  return dir;
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
