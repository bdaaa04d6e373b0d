// Bundles every process entry point (scripts/bundle.ts): the plugin runs once per Argo CD manifest
// generation, so its start-up time is part of every sync.
import { existsSync } from "node:fs";
import path from "node:path";
import { bundle, root } from "./bundle.ts";

/** entry source → bundle, relative to the repository root */
export const entryPoints: Record<string, string> = {
  "plugin/src/cli.ts": "plugin/dist/digest-migrations-plugin.mjs",
  "reconciler/src/main.ts": "reconciler/dist/reconciler.mjs",
  "reconciler/src/waiter.ts": "reconciler/dist/waiter.mjs",
};

for (const [source, out] of Object.entries(entryPoints)) {
  if (!existsSync(path.join(root, source))) continue;
  await bundle(path.join(root, source), path.join(root, out));
}
