// The waiter API's check of a waiter's token (shared/src/waiter-auth.ts decides; this file asks the API
// server). Every replica reviews tokens itself (a TokenReview is no write, so followers may send it).
// A review is remembered by the token's SHA-256 — never the token — so a waiter's long-polls cost one
// review per token, not one per poll: an accepted token until it expires (at most `acceptForMs`), a
// refused one for `refuseForMs`, so a misconfigured waiter cannot turn its retries into API load. The
// pod a remembered token names is checked against the pod cache on every answer (answerWait compares
// its uid), so a deleted pod's token answers nothing even while its review is remembered.
import { createHash } from "node:crypto";
import { isRefusal, reviewedIdentity, tokenExpiresAt } from "@digest-migrations/shared";
import type { PodIdentity, Refusal, TokenReviewStatus } from "@digest-migrations/shared";
import type { Kube } from "./kube.ts";
import type { Logger } from "./log.ts";
import { waiterTokenReviews } from "./metrics.ts";

export interface TokenReviewerOptions {
  kube: Kube;
  audience: string;
  log: Logger;
  /** Longest an accepted review is remembered (default 5 minutes; never past the token's expiry). */
  acceptForMs?: number;
  /** How long a refused review is remembered (default 10 s). */
  refuseForMs?: number;
  /** Most reviews remembered (default 10,000); the oldest go first. */
  maxEntries?: number;
  now?: () => number;
}

interface Entry {
  result: PodIdentity | Refusal;
  until: number;
}

export class TokenReviewer {
  readonly #opts: TokenReviewerOptions;
  /** By SHA-256 of the token, in insertion order (the oldest first). */
  readonly #cache = new Map<string, Entry>();
  /** Reviews in flight, so concurrent requests with one token send one review. */
  readonly #pending = new Map<string, Promise<PodIdentity | Refusal>>();

  constructor(options: TokenReviewerOptions) {
    this.#opts = options;
  }

  #now(): number {
    return (this.#opts.now ?? Date.now)();
  }

  /** The pod `token` is bound to, or why it is refused (API errors are 503s: the waiter retries). */
  async review(token: string): Promise<PodIdentity | Refusal | { status: 503; message: string }> {
    const key = createHash("sha256").update(token).digest("hex");
    const cached = this.#cache.get(key);
    if (cached !== undefined && cached.until > this.#now()) {
      waiterTokenReviews.inc({ result: "cached" });
      return cached.result;
    }
    this.#cache.delete(key);
    let pending = this.#pending.get(key);
    if (pending === undefined) {
      pending = this.#ask(token).finally(() => this.#pending.delete(key));
      this.#pending.set(key, pending);
    }
    try {
      const result = await pending;
      this.#remember(key, token, result);
      return result;
    } catch (error) {
      waiterTokenReviews.inc({ result: "error" });
      this.#opts.log.warn({ err: error }, "waiter API: TokenReview failed");
      return { status: 503, message: "the API server could not review the token now; retry" };
    }
  }

  async #ask(token: string): Promise<PodIdentity | Refusal> {
    const review = await this.#opts.kube.create<{ status?: TokenReviewStatus }>(
      "/apis/authentication.k8s.io/v1/tokenreviews",
      {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenReview",
        spec: { token, audiences: [this.#opts.audience] },
      },
    );
    const result = reviewedIdentity(review.status, this.#opts.audience);
    waiterTokenReviews.inc({ result: isRefusal(result) ? "refused" : "accepted" });
    return result;
  }

  #remember(key: string, token: string, result: PodIdentity | Refusal): void {
    const now = this.#now();
    let until: number;
    if (isRefusal(result)) until = now + (this.#opts.refuseForMs ?? 10_000);
    else until = Math.min(now + (this.#opts.acceptForMs ?? 300_000), tokenExpiresAt(token) ?? now);
    if (until <= now) return;
    this.#cache.delete(key);
    this.#cache.set(key, { result, until });
    const max = this.#opts.maxEntries ?? 10_000;
    for (const old of this.#cache.keys()) {
      if (this.#cache.size <= max) break;
      this.#cache.delete(old);
    }
  }

  /** Reviews remembered now (for tests). */
  get size(): number {
    return this.#cache.size;
  }
}
