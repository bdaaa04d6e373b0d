// The in-process contract between the controller (which knows, from its caches, whether a pod may
// start) and the waiter API (which holds the waiters' long-polls). The waiter API never calls the
// Kubernetes API itself: every answer comes from the controller's in-memory view. The question and
// the answer themselves are the waiter protocol's (shared/src/waiter-protocol.ts).
import type { WaitAnswer, WaitQuery } from "@digest-migrations/shared";

export type { WaitAnswer, WaitQuery };

/** Implemented by the controller from its caches (never an API call); used by the waiter API. */
export interface ReleaseOracle {
  answer(q: WaitQuery): WaitAnswer;
  /**
   * Registers a listener called (synchronously) after each burst of cache events with the Migrators
   * and pods that changed in it: only queries naming one of them may have a different answer.
   * Returns a function that unregisters the listener.
   */
  onChange(listener: (changes: ReleaseChanges) => void): () => void;
}

/** What changed in one burst of cache events, as {@link objectKey}s. */
export interface ReleaseChanges {
  migrators: ReadonlySet<string>;
  pods: ReadonlySet<string>;
}

/** The key of a namespaced object in {@link ReleaseChanges}: `namespace/name`. */
export function objectKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}
