// List-then-watch with resourceVersion bookkeeping, like client-go's reflector: list to get a
// consistent snapshot and its resourceVersion, watch from there, resume the watch from the last
// resourceVersion seen (bookmarks included) when the server ends it, and relist after an error or
// 410 Gone ("too old resource version") — e.g. across an apiserver restart. Handlers are
// level-based: they get the newest object, and deletions found by a relist are reported too.
import type { KubeObject } from "@digest-migrations/shared";
import type { KubeClient, ObjectList, WatchEvent } from "./client.ts";
import { delay, errorText } from "./wait.ts";

export interface ListWatchHandlers<T> {
  upsert(obj: T): void;
  remove(obj: T): void;
}

export interface ListWatchOptions {
  labelSelector?: string;
  fieldSelector?: string;
  log?: (msg: string) => void;
}

export class ListWatch<T extends KubeObject> {
  readonly #client: KubeClient;
  readonly #path: string;
  readonly #handlers: ListWatchHandlers<T>;
  readonly #opts: ListWatchOptions;
  readonly #cache = new Map<string, T>();
  readonly #stop = new AbortController();
  #current: AbortController | undefined;
  #loop: Promise<void> | undefined;
  #synced: PromiseWithResolvers<void> = Promise.withResolvers<void>();
  /** Number of successful lists (1 after start; more after relists). */
  lists = 0;

  constructor(client: KubeClient, path: string, handlers: ListWatchHandlers<T>, opts: ListWatchOptions = {}) {
    this.#client = client;
    this.#path = path;
    this.#handlers = handlers;
    this.#opts = opts;
  }

  start(): Promise<void> {
    this.#loop ??= this.#run();
    return this.#synced.promise;
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    this.#current?.abort();
    await this.#loop;
  }

  /** Drops the current watch connection, as a network failure would (for tests). */
  disconnect(): void {
    this.#current?.abort();
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.#cache.get(key(namespace, name));
  }

  items(): T[] {
    return [...this.#cache.values()];
  }

  async #run(): Promise<void> {
    let needList = true;
    let rv = "";
    let backoff = 100;
    while (!this.#stop.signal.aborted) {
      const current = new AbortController();
      this.#current = current;
      try {
        if (needList) {
          const list = await this.#client.request<ObjectList<T>>("GET", this.#path, { query: this.#selectors() });
          rv = list.metadata.resourceVersion ?? "";
          this.#replace(list.items);
          needList = false;
          this.lists++;
          this.#synced.resolve();
        }
        await this.#client.watch<T>(
          this.#path,
          { ...this.#selectors(), resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 240 },
          (event: WatchEvent<T>) => {
            if (event.type === "ERROR") {
              // metav1.Status; 410 Gone means our resourceVersion was compacted: relist.
              const status = event.object as unknown as { code?: number; message?: string };
              needList = true;
              current.abort();
              if (status.code !== 410) this.#opts.log?.(`watch ${this.#path}: error event: ${status.message}`);
              return;
            }
            rv = event.object.metadata.resourceVersion ?? rv;
            if (event.type === "BOOKMARK") return;
            const k = key(event.object.metadata.namespace, event.object.metadata.name ?? "");
            if (event.type === "DELETED") {
              this.#cache.delete(k);
              this.#handlers.remove(event.object);
            } else {
              this.#cache.set(k, event.object);
              this.#handlers.upsert(event.object);
            }
          },
          current.signal,
        );
        backoff = 100;
      } catch (err) {
        if (this.#stop.signal.aborted) break;
        if (!current.signal.aborted) {
          this.#opts.log?.(`list/watch ${this.#path}: ${errorText(err)}; relisting in ${backoff} ms`);
          needList = true;
          await delay(backoff, this.#stop.signal);
          backoff = Math.min(backoff * 2, 2_000);
        }
      }
    }
  }

  #selectors(): Record<string, string | undefined> {
    return { labelSelector: this.#opts.labelSelector, fieldSelector: this.#opts.fieldSelector };
  }

  #replace(items: T[]): void {
    const seen = new Set<string>();
    for (const item of items) {
      const k = key(item.metadata.namespace, item.metadata.name ?? "");
      seen.add(k);
      this.#cache.set(k, item);
    }
    for (const [k, old] of [...this.#cache]) {
      if (seen.has(k)) continue;
      this.#cache.delete(k);
      this.#handlers.remove(old);
    }
    for (const item of items) this.#handlers.upsert(item);
  }
}

function key(namespace: string | undefined, name: string): string {
  return `${namespace ?? ""}/${name}`;
}

/**
 * Every object of a collection the API showed since `start()`, by uid, in its latest state
 * (deleted ones in their final state): an object created and deleted between two polls is still
 * seen.
 */
export class Recorder<T extends KubeObject> {
  /** uid → the object as last seen */
  readonly seen = new Map<string, T>();
  /** uids seen deleted */
  readonly deleted = new Set<string>();
  readonly #watch: ListWatch<T>;

  constructor(client: KubeClient, path: string, opts: ListWatchOptions = {}) {
    this.#watch = new ListWatch<T>(
      client,
      path,
      {
        upsert: (obj) => void this.seen.set(obj.metadata.uid ?? "", obj),
        remove: (obj) => {
          this.seen.set(obj.metadata.uid ?? "", obj);
          this.deleted.add(obj.metadata.uid ?? "");
        },
      },
      opts,
    );
  }

  /** Resolves once the first list is in. */
  start(): Promise<void> {
    return this.#watch.start();
  }

  stop(): Promise<void> {
    return this.#watch.stop();
  }

  /** Objects in the order they were first seen. */
  all(): T[] {
    return [...this.seen.values()];
  }
}
