// Test helpers for the reconciler's own interfaces (not the Kubernetes API): an in-memory
// ReleaseOracle and a condition poller with a deadline.
import type { ReleaseOracle, WaitAnswer, WaitQuery } from "./release.ts";

/** A ReleaseOracle whose answers tests set by pod name; setting one notifies listeners. */
export class FakeOracle implements ReleaseOracle {
  readonly #answers = new Map<string, WaitAnswer>();
  readonly #listeners = new Set<() => void>();
  readonly queries: WaitQuery[] = [];
  fallback: WaitAnswer = { ready: false, reason: "PodNotFound", message: "pod not in cache" };

  set(pod: string, answer: WaitAnswer): void {
    this.#answers.set(pod, answer);
    for (const listener of [...this.#listeners]) listener();
  }

  answer(q: WaitQuery): WaitAnswer {
    this.queries.push(q);
    return this.#answers.get(q.pod) ?? this.fallback;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get listeners(): number {
    return this.#listeners.size;
  }
}

/** Resolves once `condition()` is truthy; rejects with `what` after `timeoutMs`. */
export async function waitFor(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
