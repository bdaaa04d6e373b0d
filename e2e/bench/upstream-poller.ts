// Upstream's waiter design, the comparison beside the latency benchmarks: read the Migrator every 5 s
// until its status records the digest.
import { migratedDigests } from "@digest-migrations/shared";
import type { Migrator } from "@digest-migrations/shared";
import type { KubeClient } from "../kit/client.ts";

const POLL_INTERVAL_MS = 5000;

/** Reads the Migrator at `migratorPath` every 5 s; calls `saw` once it records `digest`, or stops when `signal` aborts. */
export async function pollLikeUpstream(
  kube: KubeClient,
  migratorPath: string,
  digest: string,
  saw: () => void,
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    const m = await kube.find<Migrator>(migratorPath);
    if (migratedDigests(m?.status).has(digest)) {
      saw();
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}
