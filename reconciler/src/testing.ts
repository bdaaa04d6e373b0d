// Test helpers for the reconciler's own interfaces (not the Kubernetes API): an in-memory
// ReleaseOracle, a condition poller with a deadline, and a free loopback port.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { objectKey, type ReleaseChanges, type ReleaseOracle, type WaitAnswer, type WaitQuery } from "./release.ts";

/**
 * A ReleaseOracle whose answers tests set by pod name (in any namespace); setting one notifies
 * listeners of that pod as changed, in every namespace it was asked about.
 */
export class FakeOracle implements ReleaseOracle {
  readonly #answers = new Map<string, WaitAnswer>();
  readonly #listeners = new Set<(changes: ReleaseChanges) => void>();
  readonly queries: WaitQuery[] = [];
  fallback: WaitAnswer = { ready: false, reason: "PodNotFound", message: "pod not in cache" };

  set(pod: string, answer: WaitAnswer): void {
    this.#answers.set(pod, answer);
    const pods = new Set(this.queries.filter((q) => q.pod === pod).map((q) => objectKey(q.namespace, pod)));
    this.notify({ migrators: new Set(), pods });
  }

  /** Tells listeners that these Migrators and pods changed, as the controller does after a burst of events. */
  notify(changes: ReleaseChanges): void {
    for (const listener of [...this.#listeners]) listener(changes);
  }

  answer(q: WaitQuery): WaitAnswer {
    this.queries.push(q);
    return this.#answers.get(q.pod) ?? this.fallback;
  }

  onChange(listener: (changes: ReleaseChanges) => void): () => void {
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

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
