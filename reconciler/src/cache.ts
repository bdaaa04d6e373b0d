// Watch-backed caches: a small list+watch reflector in the manner of client-go's, built on
// @kubernetes/client-node's `Watch` (which only streams one watch request) rather than on its
// `makeInformer`/ListWatch, whose weak spots a long-running controller cannot afford: a watch that
// ends is restarted without a relist or a backoff, a 410 Gone arriving as an ERROR event is not
// turned into a relist, bookmarks are not requested, and a connection that silently stops
// delivering is only noticed by the request's inactivity timer.
//
// Here:
// - list (paginated, `limit`/`continue`) gives a consistent snapshot and its
//   `metadata.resourceVersion`; objects that vanished between two lists are reported as deletions;
// - watch from that resourceVersion with `allowWatchBookmarks=true`; every event and BOOKMARK moves
//   the resourceVersion forward, so a watch the server ends (timeoutSeconds) or that breaks is
//   resumed where it stopped, without a relist;
// - 410 Gone ("too old resource version": the server's watch cache no longer holds our version),
//   as an HTTP status or as an ERROR event with `code: 410`, leads to a relist;
// - other errors back off exponentially (with jitter) before resuming;
// - a watchdog aborts a watch that has been silent longer than `watchdogSeconds` and resumes it,
//   so a stalled connection (a half-open TCP connection, a wedged proxy) cannot freeze the cache.
//   (client-node's Watch also aborts after 30 s without data; either way the watch resumes.)
// Objects in the cache are the API's JSON; readers must not mutate them.
import { Watch } from "@kubernetes/client-node";
import type { KubeObject } from "@digest-migrations/shared";
import type { Logger } from "./log.ts";
import { ApiError } from "./kube.ts";
import type { Kube, ObjectList } from "./kube.ts";
import { trimForCache } from "./trim.ts";

export type CacheEventType = "upsert" | "delete";
export type CacheListener<T> = (type: CacheEventType, object: T, previous: T | undefined) => void;

export interface ReflectorOptions {
  kube: Kube;
  /** apiVersion and kind stamped on listed items (list responses leave them out). */
  apiVersion: string;
  kind: string;
  /** Collection path, e.g. /api/v1/pods or /apis/apps/v1/namespaces/x/deployments. */
  path: string;
  labelSelector?: string;
  log: Logger;
  /** Resume a watch silent for longer than this (default 60 s). */
  watchdogSeconds?: number;
  /** Page size of lists (default 500). */
  pageSize?: number;
  /** Longest backoff after errors (default 30 s). */
  maxBackoffMs?: number;
}

function keyOf(namespace: string | undefined, name: string | undefined): string {
  return `${namespace ?? ""}/${name ?? ""}`;
}

/** One list+watch loop feeding an in-memory store indexed by namespace. */
export class Reflector<T extends KubeObject> {
  readonly #opts: ReflectorOptions;
  readonly #watch: Watch;
  readonly #byNamespace = new Map<string, Map<string, T>>();
  readonly #listeners = new Set<CacheListener<T>>();
  readonly #stop = new AbortController();
  #resourceVersion: string | undefined;
  #current: AbortController | undefined;
  #loop: Promise<void> | undefined;
  #synced = false;
  readonly #syncedWaiter = Promise.withResolvers<void>();
  /** Counters for tests and metrics. */
  readonly stats = { lists: 0, watches: 0, errors: 0, expired: 0, silent: 0 };

  constructor(opts: ReflectorOptions) {
    this.#opts = opts;
    this.#watch = new Watch(opts.kube.config);
  }

  get description(): string {
    return `${this.#opts.kind} ${this.#opts.path}`;
  }

  onEvent(listener: CacheListener<T>): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  start(): Promise<void> {
    this.#loop ??= this.#run();
    return this.#syncedWaiter.promise;
  }

  synced(): boolean {
    return this.#synced;
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    this.#current?.abort();
    this.#syncedWaiter.resolve();
    await this.#loop;
  }

  /** Drops the current watch connection, as a network failure would (tests use this). */
  disconnect(): void {
    this.#current?.abort();
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.#byNamespace.get(namespace ?? "")?.get(name);
  }

  /** Objects in `namespace`, or all objects when undefined. */
  list(namespace?: string): T[] {
    if (namespace !== undefined) return [...(this.#byNamespace.get(namespace)?.values() ?? [])];
    const all: T[] = [];
    for (const map of this.#byNamespace.values()) all.push(...map.values());
    return all;
  }

  #set(object: T): void {
    trimForCache(object);
    const namespace = object.metadata.namespace ?? "";
    const name = object.metadata.name ?? "";
    let map = this.#byNamespace.get(namespace);
    if (map === undefined) {
      map = new Map();
      this.#byNamespace.set(namespace, map);
    }
    const previous = map.get(name);
    map.set(name, object);
    this.#emit("upsert", object, previous);
  }

  #delete(object: T): void {
    const namespace = object.metadata.namespace ?? "";
    const map = this.#byNamespace.get(namespace);
    const previous = map?.get(object.metadata.name ?? "");
    map?.delete(object.metadata.name ?? "");
    if (map?.size === 0) this.#byNamespace.delete(namespace);
    this.#emit("delete", previous ?? object, previous);
  }

  #emit(type: CacheEventType, object: T, previous: T | undefined): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(type, object, previous);
      } catch (error) {
        this.#opts.log.error({ err: error, cache: this.description }, "cache listener failed");
      }
    }
  }

  #stamp(object: T): T {
    if (object.apiVersion === undefined) object.apiVersion = this.#opts.apiVersion;
    if (object.kind === undefined) object.kind = this.#opts.kind;
    return object;
  }

  async #list(): Promise<void> {
    const seen = new Set<string>();
    let next: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page: ObjectList<T> = await this.#opts.kube.request("GET", this.#opts.path, {
        query: { limit: this.#opts.pageSize ?? 500, continue: next, labelSelector: this.#opts.labelSelector },
        signal: this.#stop.signal,
        timeoutMs: 60_000,
      });
      for (const item of page.items ?? []) {
        this.#stamp(item);
        seen.add(keyOf(item.metadata.namespace, item.metadata.name));
        const old = this.get(item.metadata.namespace, item.metadata.name ?? "");
        if (old?.metadata.resourceVersion !== item.metadata.resourceVersion) this.#set(item);
      }
      next = page.metadata?.continue || undefined;
      resourceVersion = page.metadata?.resourceVersion;
    } while (next !== undefined);
    for (const object of this.list()) {
      if (!seen.has(keyOf(object.metadata.namespace, object.metadata.name))) this.#delete(object);
    }
    this.#resourceVersion = resourceVersion;
    this.stats.lists++;
  }

  /** One watch request; resolves with how it ended. */
  #watchOnce(): Promise<"closed" | "expired" | "silent" | Error> {
    const outcome = Promise.withResolvers<"closed" | "expired" | "silent" | Error>();
    const watchdogMs = (this.#opts.watchdogSeconds ?? 60) * 1000;
    let lastActivity = Date.now();
    let controller: AbortController | undefined;
    let finished = false;
    const finish = (result: "closed" | "expired" | "silent" | Error): void => {
      if (finished) return;
      finished = true;
      clearInterval(watchdog);
      controller?.abort();
      outcome.resolve(result);
    };
    const watchdog = setInterval(
      () => {
        if (Date.now() - lastActivity > watchdogMs) finish("silent");
      },
      Math.min(1000, watchdogMs),
    );
    watchdog.unref();
    this.stats.watches++;
    // Server-side timeout, randomised like client-go's (5–10 min), so watches end cleanly and
    // are resumed from the last resourceVersion.
    const timeoutSeconds = 300 + Math.floor(Math.random() * 300);
    this.#watch
      .watch(
        this.#opts.path,
        {
          resourceVersion: this.#resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds,
          labelSelector: this.#opts.labelSelector,
        },
        (type: string, object: T) => {
          lastActivity = Date.now();
          if (finished) return;
          if (type === "ERROR") {
            const status = object as unknown as { code?: number; message?: string; reason?: string };
            if (status.code === 410) finish("expired");
            else
              finish(new Error(`watch ${this.description}: ERROR event: ${status.message ?? JSON.stringify(object)}`));
            return;
          }
          const rv = object?.metadata?.resourceVersion;
          if (type === "BOOKMARK") {
            if (rv) this.#resourceVersion = rv;
            return;
          }
          this.#stamp(object);
          if (type === "ADDED" || type === "MODIFIED") this.#set(object);
          else if (type === "DELETED") this.#delete(object);
          if (rv) this.#resourceVersion = rv;
        },
        (error: unknown) => {
          if (error === null || error === undefined) return finish("closed");
          const status = (error as { statusCode?: number }).statusCode;
          if (status === 410) return finish("expired");
          const name = (error as { name?: string }).name;
          if (name === "TimeoutError") return finish("silent");
          if (name === "AbortError") return finish("closed");
          finish(error instanceof Error ? error : new Error(`watch ${this.description}: ${JSON.stringify(error)}`));
        },
      )
      .then(
        (abort) => {
          controller = abort;
          this.#current = abort;
          if (finished) abort.abort();
        },
        (error: unknown) => finish(error instanceof Error ? error : new Error(String(error))),
      );
    return outcome.promise;
  }

  async #run(): Promise<void> {
    let needList = true;
    let failures = 0;
    const log = this.#opts.log;
    const maxBackoff = this.#opts.maxBackoffMs ?? 30_000;
    while (!this.#stop.signal.aborted) {
      try {
        if (needList) {
          await this.#list();
          needList = false;
          if (!this.#synced) {
            this.#synced = true;
            this.#syncedWaiter.resolve();
          }
        }
        const result = await this.#watchOnce();
        if (this.#stop.signal.aborted) break;
        if (result === "expired") {
          this.stats.expired++;
          log.info({ cache: this.description }, "watch resourceVersion expired (410 Gone); relisting");
          needList = true;
          failures = 0;
          continue;
        }
        if (result === "silent") {
          this.stats.silent++;
          log.debug({ cache: this.description }, "watch silent for too long; resuming");
          continue;
        }
        if (result === "closed") {
          failures = 0;
          continue;
        }
        throw result;
      } catch (error) {
        if (this.#stop.signal.aborted) break;
        this.stats.errors++;
        failures++;
        if (error instanceof ApiError && error.status === 410) needList = true;
        // After repeated failures the resourceVersion may be unusable: start over with a list.
        if (failures >= 3) needList = true;
        const backoff = Math.min(maxBackoff, 200 * 2 ** Math.min(failures, 10)) * (0.5 + Math.random() / 2);
        log.warn(
          { cache: this.description, err: error, backoffMs: Math.round(backoff) },
          "list/watch failed; retrying",
        );
        await sleep(backoff, this.#stop.signal);
      }
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
