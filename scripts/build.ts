// Bundles every process entry point into one ESM file with esbuild, so a process starts by
// loading a single file instead of resolving hundreds of modules: the plugin runs once per
// Argo CD manifest generation, so its start-up time is part of every sync.
import { build } from "esbuild";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/** entry source → bundle, relative to the repository root */
export const entryPoints: Record<string, string> = {
  "plugin/src/cli.ts": "plugin/dist/digest-migrations-plugin.mjs",
  "reconciler/src/main.ts": "reconciler/dist/reconciler.mjs",
  "reconciler/src/waiter.ts": "reconciler/dist/waiter.mjs",
};

// CommonJS dependencies inside an ESM bundle still call require() for Node built-ins.
const banner = [
  "import { createRequire as __dmCreateRequire } from 'node:module';",
  "const require = __dmCreateRequire(import.meta.url);",
].join("\n");

for (const [source, out] of Object.entries(entryPoints)) {
  if (!existsSync(path.join(root, source))) continue;
  await build({
    entryPoints: [path.join(root, source)],
    outfile: path.join(root, out),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node24",
    sourcemap: "linked",
    legalComments: "linked",
    banner: { js: banner },
    logLevel: "warning",
  });
}
