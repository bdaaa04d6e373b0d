// Leader election on a coordination.k8s.io/v1 Lease, with the semantics of client-go's
// leaderelection package: every replica runs caches and serves the waiter API, but only the
// holder of the Lease writes (creates Jobs and probe pods, pins pods, records status).
//
// - Acquire: every retryPeriod (jittered), read the Lease; take it when it does not exist, when
//   spec.holderIdentity is empty (released), or when the holder has not renewed for
//   spec.leaseDurationSeconds. "Not renewed" is judged on this replica's own clock, from the
//   moment it last saw the Lease change (its resourceVersion), never from spec.renewTime, so
//   clock skew between replicas cannot shorten a lease.
// - Renew: every retryPeriod, write spec.renewTime. Updates carry metadata.resourceVersion, so
//   two candidates racing for the same Lease cannot both win (the apiserver answers 409).
// - Step down: when no renewal has succeeded for renewDeadline (< leaseDuration), stop leading
//   before anyone else can acquire, then go back to acquiring.
// - Release: on graceful shutdown, stop leading first, then clear spec.holderIdentity so
//   another replica takes over at its next retry instead of waiting out the lease.
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { ApiException, CoordinationV1Api, V1MicroTime } from "@kubernetes/client-node";
import type { KubeConfig, V1Lease } from "@kubernetes/client-node";
import type { Logger } from "./log.ts";
import { log as defaultLog } from "./log.ts";
import { isLeader } from "./metrics.ts";
import { pause } from "./pause.ts";

export interface LeaderElectionOptions {
  kube: KubeConfig;
  /** Namespace of the Lease (the reconciler's own). */
  namespace: string;
  /** Name of the Lease. */
  name: string;
  /** This candidate's unique identity (see defaultIdentity). */
  identity: string;
  /** How long a lease lasts without renewal before others may take it (client-go default 15). */
  leaseDurationSeconds?: number;
  /** How long the leader keeps trying to renew before it steps down (client-go default 10). */
  renewDeadlineSeconds?: number;
  /** Interval between attempts (client-go default 2). */
  retryPeriodSeconds?: number;
  /** Clear the Lease's holder when `signal` aborts while leading (default true); false simulates a crash. */
  releaseOnCancel?: boolean;
  /** Called when this candidate becomes the leader: start writing. */
  onStartedLeading(): void;
  /** Called when this candidate stops leading (lost the lease or shutting down): stop writing at once. */
  onStoppedLeading(): void;
  /** Called when the observed leader changes (including to this candidate). */
  onNewLeader?(identity: string): void;
  /** Aborting ends the election (releasing the lease if leading and releaseOnCancel). */
  signal: AbortSignal;
  log?: Logger;
}

/** client-go's JitterFactor: retries wait retryPeriod × [1, 1.2). */
const JITTER = 1.2;

/**
 * A unique identity: the pod's name plus a random suffix, as client-go recommends. The pod's name
 * comes from $POD_NAME (the downward API, as the shipped Deployment sets it): with hostNetwork the
 * hostname is the node's, which would make every replica on a node look alike in the Lease.
 */
export function defaultIdentity(env: NodeJS.ProcessEnv = process.env): string {
  return `${env["POD_NAME"] || hostname()}_${randomUUID()}`;
}

/** Checks the timing relations client-go insists on, so a misconfiguration fails at start-up. */
export function validateTimings(lease: number, renew: number, retry: number): void {
  if (!Number.isInteger(lease) || lease < 1)
    throw new Error(`leaseDurationSeconds must be a whole number ≥ 1 (got ${lease})`);
  if (!(renew > 0) || !(retry > 0)) throw new Error(`renewDeadlineSeconds and retryPeriodSeconds must be positive`);
  if (!(lease > renew))
    throw new Error(`leaseDurationSeconds (${lease}) must be greater than renewDeadlineSeconds (${renew})`);
  if (!(renew > JITTER * retry))
    throw new Error(`renewDeadlineSeconds (${renew}) must be greater than ${JITTER} × retryPeriodSeconds (${retry})`);
}

/**
 * Runs the election until `signal` aborts. Resolves after the final release (if leading).
 * A lost lease is followed by onStoppedLeading and a new attempt to acquire.
 */
export async function runLeaderElection(opts: LeaderElectionOptions): Promise<void> {
  const leaseSeconds = opts.leaseDurationSeconds ?? 15;
  const renewMs = (opts.renewDeadlineSeconds ?? 10) * 1000;
  const retryMs = (opts.retryPeriodSeconds ?? 2) * 1000;
  validateTimings(leaseSeconds, renewMs / 1000, retryMs / 1000);
  const { signal, identity, namespace, name } = opts;
  const logger = (opts.log ?? defaultLog).child({ lease: `${namespace}/${name}`, identity });
  const api = opts.kube.makeApiClient(CoordinationV1Api);

  /** The Lease as last seen, and when (this process's monotonic clock) it was first seen in that version. */
  let observed: V1Lease | undefined;
  let observedAt = 0;
  let lastError = "";
  const observe = (lease: V1Lease): void => {
    if (lease.metadata?.resourceVersion === observed?.metadata?.resourceVersion) return;
    const before = observed?.spec?.holderIdentity ?? "";
    observed = lease;
    observedAt = performance.now();
    const holder = lease.spec?.holderIdentity ?? "";
    if (holder !== before && holder !== "") {
      logger.info({ leader: holder }, holder === identity ? "this replica is the leader" : `new leader: ${holder}`);
      opts.onNewLeader?.(holder);
    }
  };
  const failed = (what: string, error: unknown): false => {
    const message =
      error instanceof ApiException ? `HTTP ${error.code}` : error instanceof Error ? error.message : String(error);
    // Only a changed error is worth a line: an outage would otherwise log every retry period.
    if (`${what}: ${message}` !== lastError) logger.warn({ err: error }, `leader election: ${what} failed: ${message}`);
    lastError = `${what}: ${message}`;
    return false;
  };

  /** One attempt to take or keep the lease; true when this candidate holds it afterwards. */
  async function tryAcquireOrRenew(): Promise<boolean> {
    const now = new V1MicroTime();
    let current: V1Lease;
    try {
      current = await api.readNamespacedLease({ name, namespace });
    } catch (error) {
      if (!(error instanceof ApiException && error.code === 404))
        return failed(`reading Lease ${namespace}/${name}`, error);
      try {
        const created = await api.createNamespacedLease({
          namespace,
          body: {
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: { name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds: leaseSeconds,
              acquireTime: now,
              renewTime: now,
              leaseTransitions: 0,
            },
          },
        });
        observe(created);
        lastError = "";
        return true;
      } catch (createError) {
        // 409: another candidate created it first; the next attempt reads theirs.
        if (createError instanceof ApiException && createError.code === 409) return false;
        return failed(`creating Lease ${namespace}/${name}`, createError);
      }
    }
    observe(current);
    const spec = current.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    const durationMs = (spec.leaseDurationSeconds ?? leaseSeconds) * 1000;
    if (holder !== "" && holder !== identity && observedAt + durationMs > performance.now()) return false;
    const mine = holder === identity;
    try {
      const updated = await api.replaceNamespacedLease({
        name,
        namespace,
        body: {
          ...current,
          spec: {
            ...spec,
            holderIdentity: identity,
            leaseDurationSeconds: leaseSeconds,
            renewTime: now,
            // Kept as read (a MicroTime string) when renewing; a new holder starts a new term.
            acquireTime: mine && spec.acquireTime ? spec.acquireTime : now,
            leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
          },
        },
      });
      observe(updated);
      lastError = "";
      return true;
    } catch (error) {
      if (error instanceof ApiException && error.code === 409) return false; // someone else wrote first
      return failed(`updating Lease ${namespace}/${name}`, error);
    }
  }

  /** Keeps trying until acquired (true) or aborted (false). */
  async function acquire(): Promise<boolean> {
    logger.info("leader election: trying to acquire the lease");
    while (!signal.aborted) {
      if (await tryAcquireOrRenew()) return true;
      await pause(retryMs * (1 + Math.random() * (JITTER - 1)), signal);
    }
    return false;
  }

  /** Renews until renewal fails for renewDeadline (returns "lost") or the signal aborts ("aborted"). */
  async function renew(): Promise<"lost" | "aborted"> {
    let renewedAt = performance.now();
    while (!signal.aborted) {
      await pause(retryMs, signal);
      let ok = false;
      while (!signal.aborted) {
        const left = renewedAt + renewMs - performance.now();
        if (left <= 0) break;
        // An apiserver that hangs must not keep a former leader writing past its deadline.
        ok = (await withTimeout(tryAcquireOrRenew(), left)) ?? false;
        if (ok) break;
        await pause(Math.min(retryMs, Math.max(0, renewedAt + renewMs - performance.now())), signal);
      }
      if (signal.aborted) return "aborted";
      if (!ok) return "lost";
      renewedAt = performance.now();
    }
    return "aborted";
  }

  /** Clears the holder so another candidate may acquire at once (only if this candidate still holds it). */
  async function release(): Promise<void> {
    try {
      const current = await withTimeout(api.readNamespacedLease({ name, namespace }), renewMs);
      if (!current || current.spec?.holderIdentity !== identity) return;
      const now = new V1MicroTime();
      await withTimeout(
        api.replaceNamespacedLease({
          name,
          namespace,
          body: {
            ...current,
            spec: { ...current.spec, holderIdentity: "", leaseDurationSeconds: 1, acquireTime: now, renewTime: now },
          },
        }),
        renewMs,
      );
      logger.info("leader election: released the lease");
    } catch (error) {
      // The lease then simply expires after leaseDuration.
      failed(`releasing Lease ${namespace}/${name}`, error);
    }
  }

  while (!signal.aborted) {
    if (!(await acquire())) break;
    if (signal.aborted) {
      // Acquired just as shutdown began: never start leading, hand the lease back.
      if (opts.releaseOnCancel ?? true) await release();
      break;
    }
    isLeader.set(1);
    logger.info("leader election: started leading");
    opts.onStartedLeading();
    const outcome = await renew();
    isLeader.set(0);
    opts.onStoppedLeading();
    if (outcome === "lost") {
      logger.warn(`leader election: could not renew the lease within ${renewMs / 1000}s; stopped leading`);
      continue;
    }
    logger.info("leader election: stopped leading (shutting down)");
    if (opts.releaseOnCancel ?? true) await release();
  }
}

/** Resolves with the promise's value, or undefined once `ms` have passed (the promise runs on, ignored). */
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
