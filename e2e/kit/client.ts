// A small JSON client for the Kubernetes API used by the node emulator and the e2e harness.
// Authentication and TLS come from @kubernetes/client-node's KubeConfig (applyToHTTPSOptions);
// objects stay plain API JSON (RFC 3339 strings, no deserialised classes), the shape the
// product's shared code works with. Watches are plain HTTP streams of JSON lines.
import http from "node:http";
import https from "node:https";
import { KubeConfig } from "@kubernetes/client-node";
import type { KubeObject } from "@digest-migrations/shared";

export class ApiError extends Error {
  override name = "ApiError";
  readonly status: number;
  readonly body: unknown;
  constructor(message: string, status: number, body: unknown) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export interface ObjectList<T> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

export interface RequestOptions {
  body?: unknown;
  contentType?: string;
  query?: Record<string, string | number | boolean | undefined>;
  signal?: AbortSignal;
  /** Per-request timeout (default 30 s; watches pass 0 for none). */
  timeoutMs?: number;
}

export const MERGE_PATCH = "application/merge-patch+json";
/** Strategic merge patch: lists such as `containers` merge by name instead of being replaced. */
export const STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json";

export class KubeClient {
  readonly kubeConfig: KubeConfig;
  readonly server: string;
  #options: Promise<https.RequestOptions> | undefined;

  constructor(kubeConfig: KubeConfig) {
    this.kubeConfig = kubeConfig;
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error("kubeconfig has no current cluster");
    this.server = cluster.server.replace(/\/+$/, "");
  }

  static fromFile(path: string): KubeClient {
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    return new KubeClient(kc);
  }

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.#send(method, path, opts);
    const text = await readAll(res);
    const status = res.statusCode ?? 0;
    const parsed = parseJson(text);
    if (status < 200 || status >= 300) {
      const message =
        typeof parsed === "object" && parsed !== null && "message" in parsed
          ? String(parsed.message)
          : text.slice(0, 500);
      throw new ApiError(`${method} ${path}: HTTP ${status}: ${message}`, status, parsed);
    }
    return parsed as T;
  }

  get<T = KubeObject>(path: string): Promise<T> {
    return this.request<T>("GET", path);
  }

  /** GET that answers undefined for 404. */
  async find<T = KubeObject>(path: string): Promise<T | undefined> {
    try {
      return await this.get<T>(path);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  create<T = KubeObject>(path: string, body: unknown): Promise<T> {
    return this.request<T>("POST", path, { body });
  }

  mergePatch<T = KubeObject>(path: string, patch: unknown): Promise<T> {
    return this.request<T>("PATCH", path, { body: patch, contentType: MERGE_PATCH });
  }

  strategicPatch<T = KubeObject>(path: string, patch: unknown): Promise<T> {
    return this.request<T>("PATCH", path, { body: patch, contentType: STRATEGIC_MERGE_PATCH });
  }

  delete(path: string, body?: unknown): Promise<unknown> {
    return this.request("DELETE", path, { body });
  }

  /**
   * Opens a watch stream and calls `onEvent` per event until the server closes it, `signal`
   * aborts, or the connection fails (the returned promise rejects). Callers resume from the last
   * resourceVersion they saw and relist on 410 Gone.
   */
  async watch<T>(
    path: string,
    query: Record<string, string | number | boolean | undefined>,
    onEvent: (event: WatchEvent<T>) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const res = await this.#send("GET", path, { query: { ...query, watch: true }, signal, timeoutMs: 0 });
    const status = res.statusCode ?? 0;
    if (status !== 200) {
      const text = await readAll(res);
      throw new ApiError(`WATCH ${path}: HTTP ${status}: ${text.slice(0, 500)}`, status, parseJson(text));
    }
    await new Promise<void>((resolve, reject) => {
      let buffered = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (!line) continue;
          try {
            onEvent(JSON.parse(line) as WatchEvent<T>);
          } catch (err) {
            res.destroy();
            reject(err instanceof Error ? err : new Error(String(err)));
            return;
          }
        }
      });
      res.on("end", () => resolve());
      res.on("close", () => resolve());
      res.on("error", (err) => (signal.aborted ? resolve() : reject(err)));
    });
  }

  /**
   * The REST path of a kind (discovered once per group/version from the API, so CRDs work too):
   * `/apis/apps/v1/namespaces/ns/deployments[/name]`.
   */
  async resourcePath(apiVersion: string, kind: string, namespace?: string, name?: string): Promise<string> {
    const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    this.#discovery[base] ??= this.get<{ resources: { name: string; kind: string; namespaced: boolean }[] }>(
      base,
    ).catch((err: unknown) => {
      delete this.#discovery[base];
      throw err;
    });
    const { resources } = await this.#discovery[base];
    const resource = resources.find((r) => r.kind === kind && !r.name.includes("/"));
    if (!resource) throw new Error(`the API has no kind ${kind} in ${apiVersion}`);
    const ns = resource.namespaced ? `/namespaces/${namespace ?? "default"}` : "";
    return `${base}${ns}/${resource.name}${name ? `/${name}` : ""}`;
  }

  /** Creates `obj` (its apiVersion, kind and metadata.namespace say where). */
  async createObject<T extends KubeObject>(obj: T): Promise<T> {
    return this.create<T>(await this.resourcePath(obj.apiVersion, obj.kind, obj.metadata.namespace), obj);
  }

  async getObject<T extends KubeObject>(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
  ): Promise<T | undefined> {
    return this.find<T>(await this.resourcePath(apiVersion, kind, namespace, name));
  }

  async patchObject<T extends KubeObject>(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
    patch: unknown,
    contentType: string = MERGE_PATCH,
  ): Promise<T> {
    const path = await this.resourcePath(apiVersion, kind, namespace, name);
    return this.request<T>("PATCH", path, { body: patch, contentType });
  }

  /** Deletes an object (`propagationPolicy` Background by default, as kubectl does); 404 is fine. */
  async deleteObject(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
    propagationPolicy: "Background" | "Foreground" | "Orphan" = "Background",
  ): Promise<void> {
    try {
      await this.delete(await this.resourcePath(apiVersion, kind, namespace, name), {
        apiVersion: "v1",
        kind: "DeleteOptions",
        propagationPolicy,
      });
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
    }
  }

  readonly #discovery: Record<string, Promise<{ resources: { name: string; kind: string; namespaced: boolean }[] }>> =
    {};

  async #send(method: string, path: string, opts: RequestOptions): Promise<http.IncomingMessage> {
    this.#options ??= (async () => {
      const o: https.RequestOptions = {};
      await this.kubeConfig.applyToHTTPSOptions(o);
      return o;
    })();
    const base = await this.#options;
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const headers: Record<string, string> = { ...(base.headers as Record<string, string>), Accept: "application/json" };
    if (payload !== undefined) {
      headers["Content-Type"] = opts.contentType ?? "application/json";
      headers["Content-Length"] = String(Buffer.byteLength(payload));
    }
    const transport = url.protocol === "http:" ? http : https;
    const timeoutMs = opts.timeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const req = transport.request(
        url,
        { ...base, method, headers, agent: false, ...(opts.signal ? { signal: opts.signal } : {}) },
        resolve,
      );
      if (timeoutMs > 0) req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on("error", (err) => reject(new Error(`${method} ${url.pathname}: ${err.message}`, { cause: err })));
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }
}

function readAll(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (c: string) => (text += c));
    res.on("end", () => resolve(text));
    res.on("error", reject);
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** Path helpers for the core API group. */
export const paths = {
  pods: (ns: string) => `/api/v1/namespaces/${ns}/pods`,
  pod: (ns: string, name: string) => `/api/v1/namespaces/${ns}/pods/${name}`,
  podStatus: (ns: string, name: string) => `/api/v1/namespaces/${ns}/pods/${name}/status`,
  podBinding: (ns: string, name: string) => `/api/v1/namespaces/${ns}/pods/${name}/binding`,
  nodes: () => `/api/v1/nodes`,
  node: (name: string) => `/api/v1/nodes/${name}`,
  nodeStatus: (name: string) => `/api/v1/nodes/${name}/status`,
  secret: (ns: string, name: string) => `/api/v1/namespaces/${ns}/secrets/${name}`,
  configMap: (ns: string, name: string) => `/api/v1/namespaces/${ns}/configmaps/${name}`,
  namespaces: () => `/api/v1/namespaces`,
  namespace: (name: string) => `/api/v1/namespaces/${name}`,
  leases: (ns: string) => `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`,
  lease: (ns: string, name: string) => `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${name}`,
};
