// Prometheus metrics served on the metrics port's /metrics. One registry for the process, so
// tests and the server read the same counters.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export const registry = new Registry();

const PREFIX = "digest_migrations_";

/** Migration Jobs created, by Migrator. */
export const migrationsStarted = new Counter({
  name: `${PREFIX}migrations_started_total`,
  help: "Migration Jobs created.",
  labelNames: ["namespace", "migrator"] as const,
  registers: [registry],
});

/** Migration Jobs that completed successfully (digest recorded). */
export const migrationsSucceeded = new Counter({
  name: `${PREFIX}migrations_succeeded_total`,
  help: "Migration Jobs that succeeded.",
  labelNames: ["namespace", "migrator"] as const,
  registers: [registry],
});

/** Migration Jobs that failed. */
export const migrationsFailed = new Counter({
  name: `${PREFIX}migrations_failed_total`,
  help: "Migration Jobs that failed.",
  labelNames: ["namespace", "migrator"] as const,
  registers: [registry],
});

/** Time spent in one reconcile of a Migrator. `result`: success, error, requeue. */
export const reconcileDuration = new Histogram({
  name: `${PREFIX}reconcile_duration_seconds`,
  help: "Duration of one Migrator reconcile.",
  labelNames: ["result"] as const,
  buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

/**
 * Lifetime of a digest probe pod, creation to removal (pulling the image on a node to learn its digest).
 * `result`: resolved, no_digest, failed (a pull or container failure the kubelet retries), unsupported_runtime,
 * ended (refused or evicted by the kubelet), abandoned (no pod needed it any more before it answered).
 */
export const probeDuration = new Histogram({
  name: `${PREFIX}probe_duration_seconds`,
  help: "Lifetime of a digest probe pod, by what it found.",
  labelNames: ["result"] as const,
  buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300],
  registers: [registry],
});

/** Waiter API requests by outcome: ready, not_ready, timeout, bad_request, rate_limited, method_not_allowed, too_large, not_found, unauthenticated, forbidden. */
export const waiterRequests = new Counter({
  name: `${PREFIX}waiter_requests_total`,
  help: "Waiter API requests by result.",
  labelNames: ["result"] as const,
  registers: [registry],
});

/** Waiter tokens reviewed (waiter authentication): accepted, refused, cached (a remembered review), error. */
export const waiterTokenReviews = new Counter({
  name: `${PREFIX}waiter_token_reviews_total`,
  help: "Waiter tokens checked with a TokenReview, by result (cached: answered from a remembered review).",
  labelNames: ["result"] as const,
  registers: [registry],
});

/** Long-polls currently held open by the waiter API. */
export const waiterLongPolls = new Gauge({
  name: `${PREFIX}waiter_long_polls`,
  help: "Waiter API long-polls currently held open.",
  registers: [registry],
});

/** Kubernetes API requests by verb and result (ok, error). */
export const apiRequests = new Counter({
  name: `${PREFIX}api_requests_total`,
  help: "Kubernetes API requests made by the reconciler.",
  labelNames: ["verb", "resource", "result"] as const,
  registers: [registry],
});

/** 1 while this replica holds the leader Lease. */
export const isLeader = new Gauge({
  name: `${PREFIX}leader`,
  help: "1 when this replica is the leader (writes), else 0.",
  registers: [registry],
});

/** 1 once the controller's caches are synced. */
export const cachesSynced = new Gauge({
  name: `${PREFIX}caches_synced`,
  help: "1 when the controller's caches are synced, else 0.",
  registers: [registry],
});

collectDefaultMetrics({ register: registry, prefix: PREFIX });
