// A test file's way into the world of its test run: the description `e2e/world/run.ts` wrote
// (DM_WORLD), or a world kept running by `run.ts --keep`, or — when a single test file runs on its
// own (`npx tap e2e/…test.ts`) — a world this test process starts and stops itself.
import fs from "node:fs";
import { KubeClient } from "../kit/client.ts";
import { connectPostgres } from "../postgres/postgres.ts";
import type { Postgres } from "../postgres/postgres.ts";
import { externalCluster } from "../harness/external-cluster.ts";
import type { ClusterHandle } from "../harness/external-cluster.ts";
import { processAlive } from "../node/host.ts";
import { KEPT_WORLD, startWorld } from "./world.ts";
import type { WorldInfo } from "./world.ts";

export interface WorldHandle {
  info: WorldInfo;
  /** admin client */
  kube: KubeClient;
  cluster: ClusterHandle;
  postgres: Omit<Postgres, "stop">;
}

const verbose = Boolean(process.env.DM_E2E_VERBOSE);
let connected: Promise<WorldHandle> | undefined;

export function readWorldInfo(file: string): WorldInfo {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as WorldInfo;
  } catch (err) {
    throw new Error(
      `DM_WORLD=${file}: ${(err as Error).message} (is the run that started it still going? e2e/world/run.ts)`,
      { cause: err },
    );
  }
}

/**
 * The world's images, or another build of them that push-images.ts pushed into it (DM_RECONCILER_IMAGE,
 * DM_PLUGIN_IMAGE): everything a test runs — the chart's reconciler, the waiters, the plugin — uses these.
 */
function withPushedImages(info: WorldInfo): WorldInfo {
  const reconciler = process.env.DM_RECONCILER_IMAGE;
  const plugin = process.env.DM_PLUGIN_IMAGE;
  return {
    ...info,
    images: { ...info.images, ...(reconciler ? { reconciler } : {}), ...(plugin ? { plugin } : {}) },
  };
}

/** The description file of a world kept running by `e2e/world/run.ts --keep`, if its owner lives. */
function keptWorld(): string | undefined {
  try {
    const file = fs.readFileSync(KEPT_WORLD, "utf8").trim();
    return processAlive(readWorldInfo(file).ownerPid) ? file : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The world of this test run: DM_WORLD's, else a kept one, else one this process starts. `atEnd`
 * registers what must run when the caller is done (a test file passes tap's root teardown; tap is
 * not loaded here, so scripts can connect too).
 */
export function world(atEnd: (fn: () => Promise<void>) => void = () => {}): Promise<WorldHandle> {
  connected ??= (async () => {
    let info: WorldInfo;
    const file = process.env.DM_WORLD ?? keptWorld();
    if (file) {
      info = readWorldInfo(file);
    } else {
      const startedAt = Date.now();
      const w = await startWorld((line) => {
        if (verbose) console.error(line);
      });
      console.error(`# world started by this process in ${((Date.now() - startedAt) / 1000).toFixed(1)}s`);
      atEnd(() => w.stop());
      info = w.info;
    }
    const cluster = externalCluster(info.adminKubeconfig);
    atEnd(() => cluster.stop());
    return {
      info: withPushedImages(info),
      kube: KubeClient.fromFile(info.adminKubeconfig),
      cluster,
      postgres: connectPostgres(info.postgres),
    };
  })();
  return connected;
}
