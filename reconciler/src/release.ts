// The contract between the controller (which knows, from its caches, whether a pod's digest is
// migrated) and the waiter API (which answers waiter init containers). The waiter API never
// calls the Kubernetes API itself: every answer comes from the controller's in-memory view.

/** What a waiter init container asks: "may this container of this pod start?" */
export interface WaitQuery {
  namespace: string;
  pod: string;
  /** metadata.uid of the pod, when the waiter knows it (downward API); guards against a recreated pod of the same name. */
  podUID?: string;
  /** Name of the Migrator (in `namespace`) gating the pod. */
  migrator: string;
  /** Name of the gated application container. */
  container: string;
}

/** The answer: `ready` releases the waiter; `reason`/`message` say why not (or why yes). */
export interface WaitAnswer {
  ready: boolean;
  /** CamelCase machine-readable reason, e.g. "Migrated", "Running", "PodNotFound". */
  reason: string;
  /** Human-readable explanation; never contains secrets. */
  message: string;
  /** The repository digest the pod runs, once known. */
  digest?: string;
}

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
