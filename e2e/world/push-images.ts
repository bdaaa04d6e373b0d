// Builds this checkout's reconciler and plugin images (as the world does: buildah, the test base) and
// pushes them to the running world's registry, for trying a change against a kept world without
// restarting it. Prints the variables that make the tests use them:
//
//   eval "$(node e2e/world/push-images.ts)"     # DM_RECONCILER_IMAGE=…, DM_PLUGIN_IMAGE=…
import { push } from "../node/images.ts";
import { world } from "./connect.ts";
import { shippedImage, sourceHash } from "./world.ts";

const cleanups: (() => Promise<void>)[] = [];
const w = await world((fn) => cleanups.push(fn));
try {
  const hash = await sourceHash();
  const log = (line: string): void => console.error(line);
  const reconciler = await shippedImage("reconciler", w.info.images.base, hash, log);
  const plugin = await shippedImage("plugin", w.info.images.base, hash, log);
  const pushed = await push(reconciler, `${w.info.node.registry}/digest-migrations/reconciler:e2e-${hash}`);
  console.log(`export DM_RECONCILER_IMAGE=${pushed.ref}@${pushed.digest}`);
  console.log(`export DM_PLUGIN_IMAGE=${plugin}`);
} finally {
  for (const fn of cleanups) await fn();
}
