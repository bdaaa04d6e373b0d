// How every process entry point is bundled: one ESM file per entry with esbuild, so a process
// starts by loading a single file instead of resolving hundreds of modules. Used by
// scripts/build.ts for the shipped bundles and by the benchmarks for their reconciler runner, so
// both run the same code the same way.
import { build } from "esbuild";
import type { Plugin } from "esbuild";
import { rmSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

export const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

// CommonJS dependencies inside an ESM bundle still call require() for Node built-ins.
const banner = [
  "import { createRequire as __dmCreateRequire } from 'node:module';",
  "const require = __dmCreateRequire(import.meta.url);",
].join("\n");

// npm installs a second, nested copy of undici under @kubernetes/client-node (the hoisted undici is an
// older major that the test runner's dependencies want). Both are the same version; bundling both
// would load undici twice in the reconciler (≈ 5 MB of resident memory), so every `undici` import
// resolves to the reconciler's (looked up only by a bundle that imports undici).
const oneUndici: Plugin = {
  name: "one-undici",
  setup(bundle) {
    const fromReconciler = createRequire(path.join(root, "reconciler/package.json"));
    bundle.onResolve({ filter: /^undici$/ }, () => ({ path: fromReconciler.resolve("undici") }));
  },
};

export interface BundleOptions {
  /** A linked source map (default true). */
  sourcemap?: boolean;
  /**
   * Define `require` for CommonJS dependencies (default true). An entry without any, such as the
   * waiter, goes without: the static `import` of node:module costs a process ~0.2 MB of resident memory.
   */
  require?: boolean;
  /**
   * Put what the entry imports with `import()` into chunk files beside it (default false), loaded only when
   * that import runs. The entry then owns its directory: the directory is emptied first, so no chunk of an
   * earlier build is left behind.
   */
  splitting?: boolean;
}

/** Bundles `source` into `outfile` (absolute paths). */
export async function bundle(source: string, outfile: string, options: BundleOptions = {}): Promise<void> {
  const sourcemap = options.sourcemap ?? true;
  const outdir = path.dirname(outfile);
  if (options.splitting === true) rmSync(outdir, { recursive: true, force: true });
  await build({
    ...(options.splitting === true
      ? {
          entryPoints: { [path.basename(outfile, ".mjs")]: source },
          outdir,
          outExtension: { ".js": ".mjs" },
          splitting: true,
          chunkNames: "[name]-[hash]",
        }
      : { entryPoints: [source], outfile }),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node24",
    ...(sourcemap ? { sourcemap: "linked", legalComments: "linked" } : {}),
    ...((options.require ?? true) ? { banner: { js: banner } } : {}),
    // Less source for Node to load and keep (≈ 4 MB of the reconciler's resident memory); names are
    // kept, so stack traces in the logs still name functions and classes.
    minifyWhitespace: true,
    minifySyntax: true,
    plugins: [oneUndici],
    logLevel: "warning",
  });
}
