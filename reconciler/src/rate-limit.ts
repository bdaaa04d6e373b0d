// A token bucket per client address: each request takes one token; tokens refill at a steady
// rate up to `burst`. Bounds how hard one misbehaving client can hit the waiter API.

export interface TokenBucketOptions {
  /** Maximum tokens (requests allowed at once after a quiet period). */
  burst: number;
  /** Tokens added per second. */
  perSecond: number;
  /** Forget clients beyond this many (their buckets are full again by then). */
  maxClients?: number;
  /** Clock in milliseconds; injectable for tests. */
  now?: () => number;
}

export type TakeResult = { ok: true } | { ok: false; retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  readonly #burst: number;
  readonly #perSecond: number;
  readonly #maxClients: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: TokenBucketOptions) {
    if (!(options.burst >= 1)) throw new Error(`rate limit burst must be at least 1 (got ${options.burst})`);
    if (!(options.perSecond > 0)) throw new Error(`rate limit must be positive (got ${options.perSecond}/s)`);
    this.#burst = options.burst;
    this.#perSecond = options.perSecond;
    this.#maxClients = options.maxClients ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** Takes one token for `client`, or says how long until one is available. */
  take(client: string): TakeResult {
    const now = this.#now();
    let bucket = this.#buckets.get(client);
    if (bucket) {
      bucket.tokens = Math.min(this.#burst, bucket.tokens + ((now - bucket.at) / 1000) * this.#perSecond);
      bucket.at = now;
      // Re-insert so the Map's order is least-recently-used first (pruning drops the oldest).
      this.#buckets.delete(client);
      this.#buckets.set(client, bucket);
    } else {
      if (this.#buckets.size >= this.#maxClients) this.#prune(now);
      bucket = { tokens: this.#burst, at: now };
      this.#buckets.set(client, bucket);
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / this.#perSecond)) };
  }

  /** Number of clients currently tracked. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Drops buckets that have refilled completely (indistinguishable from new ones); if none, the oldest. */
  #prune(now: number): void {
    const fullAfterMs = (this.#burst / this.#perSecond) * 1000;
    for (const [client, bucket] of this.#buckets) if (now - bucket.at >= fullAfterMs) this.#buckets.delete(client);
    if (this.#buckets.size >= this.#maxClients) {
      const oldest = this.#buckets.keys().next();
      if (!oldest.done) this.#buckets.delete(oldest.value);
    }
  }
}
