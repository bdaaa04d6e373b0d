// A small JSON client for the Kubernetes API. Authentication and TLS come from
// @kubernetes/client-node's KubeConfig (kubeconfig file or in-cluster service account) through
// `applySecurityAuthentication`, which also yields the undici dispatcher carrying the client
// certificates and CA. Objects stay plain API JSON (RFC 3339 strings, no deserialised classes),
// the shape the shared decision code reads.
import { KubeConfig, RequestContext, HttpMethod } from "@kubernetes/client-node";
import { fetch } from "undici";
import type { KubeObject } from "@digest-migrations/shared";
import { apiRequests } from "./metrics.ts";

export { KubeConfig };

/** A non-2xx answer of the API server, with its HTTP status and (for Status objects) its reason. */
export class ApiError extends Error {
  override name = "ApiError";
  readonly status: number;
  /** `reason` of the Status object (NotFound, AlreadyExists, Conflict, Expired…). */
  readonly reason: string | undefined;
  readonly body: unknown;
  constructor(message: string, status: number, reason: string | undefined, body: unknown) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.body = body;
  }
}

export function isNotFound(error: unknown): boolean {
  return error instanceof ApiError && error.status === 404;
}
export function isAlreadyExists(error: unknown): boolean {
  return error instanceof ApiError && error.status === 409 && error.reason === "AlreadyExists";
}
/**
 * The API server refused the request as such — 400 Bad Request, 403 Forbidden (RBAC, or an admission
 * webhook's denial), 422 Invalid — so sending it again unchanged will not help.
 */
export function isRefused(error: unknown): error is ApiError {
  return error instanceof ApiError && (error.status === 400 || error.status === 403 || error.status === 422);
}
/** 409 Conflict: a resourceVersion or uid precondition did not hold. */
export function isConflict(error: unknown): boolean {
  return error instanceof ApiError && error.status === 409 && error.reason !== "AlreadyExists";
}

export interface ObjectList<T> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export const MERGE_PATCH = "application/merge-patch+json";
export const STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json";

export interface RequestOptions {
  body?: unknown;
  contentType?: string;
  query?: Record<string, string | number | boolean | undefined>;
  signal?: AbortSignal;
  /** Per-request timeout in milliseconds (default 30 s). */
  timeoutMs?: number;
}

const METHODS: Record<string, HttpMethod> = {
  GET: HttpMethod.GET,
  POST: HttpMethod.POST,
  PUT: HttpMethod.PUT,
  PATCH: HttpMethod.PATCH,
  DELETE: HttpMethod.DELETE,
};

/** The resource segment of an API path, for metrics: /apis/batch/v1/namespaces/x/jobs/y → jobs. */
function resourceOf(path: string): string {
  const parts = path.split("?")[0]?.split("/").filter(Boolean) ?? [];
  const start = parts[0] === "api" ? 2 : 3;
  const rest = parts.slice(start);
  const index = rest[0] === "namespaces" && rest.length > 2 ? 2 : 0;
  return rest[index] ?? "discovery";
}

/** A write refused before it was sent: this replica is no longer the leader. */
export class NotLeaderError extends Error {
  override name = "NotLeaderError";
}

export interface KubeOptions {
  /**
   * Asked before every write (any method but GET); false refuses it with NotLeaderError. The
   * reconcile path's client is fenced by leadership this way, so a replica that lost its Lease stops
   * writing at its next request rather than at the end of the reconcile it was in.
   */
  mayWrite?: () => boolean;
}

export class Kube {
  readonly config: KubeConfig;
  readonly server: string;
  readonly #mayWrite: (() => boolean) | undefined;

  constructor(config: KubeConfig, options: KubeOptions = {}) {
    this.config = config;
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new Error("kubeconfig has no current cluster");
    this.server = cluster.server.replace(/\/+$/, "");
    this.#mayWrite = options.mayWrite;
  }

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    if (method !== "GET" && this.#mayWrite !== undefined && !this.#mayWrite()) {
      throw new NotLeaderError(`${method} ${path}: not sent, this replica is no longer the leader`);
    }
    const url = new URL(this.server + path);
    for (const [key, value] of Object.entries(opts.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const httpMethod = METHODS[method];
    if (httpMethod === undefined) throw new Error(`unsupported HTTP method ${method}`);
    const ctx = new RequestContext(url.toString(), httpMethod);
    await this.config.applySecurityAuthentication(ctx);
    const headers = ctx.getHeaders() as Record<string, string>;
    headers["Accept"] = "application/json";
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers["Content-Type"] = opts.contentType ?? "application/json";
    }
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? 30_000);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    const verb = method.toLowerCase();
    const resource = resourceOf(path);
    let response;
    try {
      response = await fetch(url, { method, headers, body, dispatcher: ctx.getDispatcher(), signal });
    } catch (error) {
      apiRequests.inc({ verb, resource, result: "error" });
      throw new Error(`${method} ${path}: ${(error as Error).message}`, { cause: error });
    }
    const text = await response.text();
    let parsed: unknown = undefined;
    if (text !== "") {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (response.status < 200 || response.status >= 300) {
      apiRequests.inc({ verb, resource, result: "error" });
      const status = typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : {};
      const message = typeof status.message === "string" ? status.message : text.slice(0, 500);
      const reason = typeof status.reason === "string" ? status.reason : undefined;
      throw new ApiError(`${method} ${path}: HTTP ${response.status}: ${message}`, response.status, reason, parsed);
    }
    apiRequests.inc({ verb, resource, result: "ok" });
    return parsed as T;
  }

  get<T = KubeObject>(path: string): Promise<T> {
    return this.request<T>("GET", path);
  }

  create<T = KubeObject>(path: string, body: unknown): Promise<T> {
    return this.request<T>("POST", path, { body });
  }

  replace<T = KubeObject>(path: string, body: unknown): Promise<T> {
    return this.request<T>("PUT", path, { body });
  }

  patch<T = KubeObject>(
    path: string,
    body: unknown,
    contentType: string = MERGE_PATCH,
    query?: RequestOptions["query"],
  ): Promise<T> {
    return this.request<T>("PATCH", path, query === undefined ? { body, contentType } : { body, contentType, query });
  }

  /**
   * DELETE with DeleteOptions: `propagationPolicy` (Background lets the garbage collector remove
   * dependents), `uid` as a precondition (so a recreated object of the same name is never hit),
   * `gracePeriodSeconds`. A 404 counts as done.
   */
  async remove(
    path: string,
    options: { propagationPolicy?: string; uid?: string; gracePeriodSeconds?: number } = {},
  ): Promise<boolean> {
    const body: Record<string, unknown> = { apiVersion: "v1", kind: "DeleteOptions" };
    if (options.propagationPolicy !== undefined) body.propagationPolicy = options.propagationPolicy;
    if (options.gracePeriodSeconds !== undefined) body.gracePeriodSeconds = options.gracePeriodSeconds;
    if (options.uid !== undefined) body.preconditions = { uid: options.uid };
    try {
      await this.request("DELETE", path, { body });
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }
}

/** Loads a kubeconfig file, or the in-cluster service account when `path` is undefined. */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path !== undefined) kc.loadFromFile(path);
  else kc.loadFromCluster();
  return kc;
}

/** The API path of a collection: core `/api/v1/namespaces/ns/pods`, grouped `/apis/g/v/…`. */
export function collectionPath(apiVersion: string, plural: string, namespace?: string): string {
  const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  return namespace !== undefined && namespace !== ""
    ? `${base}/namespaces/${namespace}/${plural}`
    : `${base}/${plural}`;
}

/** The API path of one namespaced object. */
export function objectPath(apiVersion: string, plural: string, namespace: string, name: string): string {
  return `${collectionPath(apiVersion, plural, namespace)}/${encodeURIComponent(name)}`;
}
