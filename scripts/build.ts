// Bundles every process entry point (scripts/bundle.ts): the plugin runs once per Argo CD manifest
// generation, so its start-up time is part of every sync.
import { existsSync } from "node:fs";
import path from "node:path";
import { bundle, root } from "./bundle.ts";
import type { BundleOptions } from "./bundle.ts";

/** entry source → bundle, relative to the repository root, and how it is bundled */
export const entryPoints: Record<string, { out: string; options?: BundleOptions }> = {
  // Split where generate imports the rest of the plugin once its renderer is running (plugin/src/generate.ts).
  "plugin/src/cli.ts": { out: "plugin/dist/digest-migrations-plugin.mjs", options: { splitting: true } },
  "reconciler/src/main.ts": { out: "reconciler/dist/reconciler.mjs" },
  // No CommonJS inside (its flags are read with util.parseArgs, not commander).
  "reconciler/src/waiter.ts": { out: "reconciler/dist/waiter.mjs", options: { require: false } },
};

for (const [source, { out, options }] of Object.entries(entryPoints)) {
  if (!existsSync(path.join(root, source))) continue;
  await bundle(path.join(root, source), path.join(root, out), options);
}
