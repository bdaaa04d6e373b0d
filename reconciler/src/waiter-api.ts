// The waiter API: `GET /v1/wait?namespace=&pod=&podUID=&migrator=&container=&timeoutSeconds=`.
// Every replica serves it from the controller's caches through a ReleaseOracle, so answering
// never costs an API call. A waiter long-polls: the answer comes at once when the pod is
// released (or its state changes), otherwise the request is held until the oracle reports a change of
// its Migrator or pod or the timeout passes, and then the current state is answered.
//
// Hardening: read-only (GET only), no request bodies, a URL length cap, strict parameter
// validation, a token bucket per client address, a global cap on held long-polls; answers carry
// only {ready, reason, message, digest}. With waiter authentication (`auth`), a request must carry the
// pod's own projected service-account token (`Authorization: Bearer`), reviewed by the API server, and
// may ask only about that pod: 401 without a usable token, 403 for another pod's (waiter-auth.ts).
import http from "node:http";
import type { AddressInfo } from "node:net";
import { WAITER_API_PATH, answerBody, authorizeQuery, bearerToken, parseWaitParams } from "@digest-migrations/shared";
import type { PodIdentity, Refusal, WaitAnswer, WaiterAuthMode, WaitQuery } from "@digest-migrations/shared";
import { close, listen } from "./cli.ts";
import type { Logger } from "./log.ts";
import { waiterLongPolls, waiterRequests } from "./metrics.ts";
import { RateLimiter } from "./rate-limit.ts";
import { objectKey, type ReleaseOracle } from "./release.ts";

export interface WaiterApiOptions {
  oracle: ReleaseOracle;
  log: Logger;
  /** Long-poll length when the waiter gives none (seconds). */
  defaultTimeoutSeconds?: number;
  /** Upper bound of a long-poll (seconds); larger requested timeouts are capped. */
  maxTimeoutSeconds?: number;
  /** Longest accepted request target (path + query), in characters. */
  maxUrlLength?: number;
  /** Most long-polls held open at once, across all clients. */
  maxLongPolls?: number;
  /** Per-client-address token bucket. */
  rateLimit?: { burst: number; perSecond: number };
  /** Clock for the rate limiter (milliseconds); injectable for tests. */
  now?: () => number;
  /** Waiter authentication; default none (no token is asked for or looked at). */
  auth?: WaiterAuth;
}

export interface WaiterAuth {
  mode: WaiterAuthMode;
  /** Reviews a bearer token (TokenReviewer in waiter-auth.ts). */
  reviewer: { review(token: string): Promise<PodIdentity | Refusal | { status: 503; message: string }> };
}

export const WAITER_API_DEFAULTS = {
  defaultTimeoutSeconds: 30,
  maxTimeoutSeconds: 60,
  maxUrlLength: 2048,
  maxLongPolls: 2000,
  rateLimit: { burst: 20, perSecond: 5 },
} as const;

/** A long-poll being held: answered by a change, its timeout, its client leaving, or shutdown. */
interface Held {
  query: WaitQuery;
  /** The reason first answered to this request; a different one is worth answering early. */
  reason: string;
  finish(answer: WaitAnswer, result: string): void;
}

export interface WaiterApi {
  readonly server: http.Server;
  listen(port: number, host?: string, reusePort?: boolean): Promise<AddressInfo>;
  /** Answers every held long-poll with the current state, then stops accepting connections. */
  close(): Promise<void>;
  /** Long-polls currently held. */
  readonly held: number;
}

export function createWaiterApi(options: WaiterApiOptions): WaiterApi {
  const defaultTimeoutSeconds = options.defaultTimeoutSeconds ?? WAITER_API_DEFAULTS.defaultTimeoutSeconds;
  const maxTimeoutSeconds = options.maxTimeoutSeconds ?? WAITER_API_DEFAULTS.maxTimeoutSeconds;
  const maxUrlLength = options.maxUrlLength ?? WAITER_API_DEFAULTS.maxUrlLength;
  const maxLongPolls = options.maxLongPolls ?? WAITER_API_DEFAULTS.maxLongPolls;
  const limiter = new RateLimiter({ ...(options.rateLimit ?? WAITER_API_DEFAULTS.rateLimit), now: options.now });
  const { oracle, log } = options;
  const held = new Set<Held>();
  // Held long-polls by the Migrator and by the pod they name, so a burst of cache events re-asks
  // only the queries it can have changed, not every waiter held.
  const byMigrator = new Index();
  const byPod = new Index();
  let closing = false;

  /** The oracle reads caches; if it throws, that is a bug worth a 500 and a log line, not a crash. */
  const ask = (query: WaitQuery): WaitAnswer | Error => {
    try {
      return oracle.answer(query);
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error));
    }
  };

  const unsubscribe = oracle.onChange((changes) => {
    const affected = new Set<Held>();
    for (const key of changes.migrators) byMigrator.collect(key, affected);
    for (const key of changes.pods) byPod.collect(key, affected);
    for (const h of affected) {
      const answer = ask(h.query);
      if (answer instanceof Error) continue;
      if (answer.ready) h.finish(answer, "ready");
      else if (answer.reason !== h.reason) h.finish(answer, "not_ready");
    }
  });

  const server = http.createServer({ maxHeaderSize: 16 * 1024, requestTimeout: 10_000 }, (req, res) => {
    handle(req, res);
  });
  // A long-poll's response is slow by design; the request itself must arrive promptly (requestTimeout above).
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;

  function reply(
    res: http.ServerResponse,
    status: number,
    body: WaitAnswer | { error: string },
    result: string,
    headers: Record<string, string> = {},
  ): void {
    waiterRequests.inc({ result });
    if (res.headersSent || res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/json",
      "cache-control": "no-store",
      "content-length": Buffer.byteLength(text),
      "x-content-type-options": "nosniff",
      ...headers,
    });
    res.end(text);
  }

  /** The question as the token allows it to be asked, or the refusal (undefined: answered already). */
  async function authorized(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    query: WaitQuery,
  ): Promise<WaitQuery | undefined> {
    const auth = options.auth;
    if (auth === undefined || auth.mode === "none") return query;
    const header = bearerToken(req.headers.authorization);
    const refuse = (status: number, message: string): undefined => {
      const result = status === 403 ? "forbidden" : status === 503 ? "error" : "unauthenticated";
      const headers: Record<string, string> =
        status === 401 ? { "www-authenticate": 'Bearer realm="digest-migrations waiter API"' } : {};
      if (status === 503) headers["retry-after"] = "2";
      reply(res, status, { error: message }, result, headers);
      return undefined;
    };
    if (header.problem !== undefined) return refuse(401, header.problem);
    if (header.token === undefined) {
      if (auth.mode === "optional") return query;
      return refuse(
        401,
        "no token: this waiter API answers a pod only with its own projected service-account token (Authorization: Bearer); render the pod with the plugin parameter waiter-token",
      );
    }
    const identity = await auth.reviewer.review(header.token);
    if ("status" in identity) return refuse(identity.status, identity.message);
    const allowed = authorizeQuery(query, identity);
    if (!("ok" in allowed)) return refuse(allowed.status, allowed.message);
    return allowed.query;
  }

  function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    answer(req, res).catch((error: unknown) => {
      log.error({ err: error }, "waiter API: answering failed");
      reply(res, 500, { error: "internal error while answering; retry" }, "error");
    });
  }

  async function answer(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const target = req.url ?? "/";
    if (req.method !== "GET") {
      reply(
        res,
        405,
        { error: `method ${req.method ?? "?"} not allowed: the waiter API is read-only (GET)` },
        "method_not_allowed",
        {
          allow: "GET",
        },
      );
      return;
    }
    if (target.length > maxUrlLength) {
      reply(res, 414, { error: `request URL longer than ${maxUrlLength} characters` }, "too_large", {
        connection: "close",
      });
      return;
    }
    // A GET carries no body; rather than read one, refuse it and drop the connection.
    const length = req.headers["content-length"];
    if (req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0")) {
      reply(res, 413, { error: "request body not allowed" }, "too_large", { connection: "close" });
      return;
    }
    const url = new URL(target, "http://waiter.invalid");
    if (url.pathname !== WAITER_API_PATH) {
      reply(res, 404, { error: `not found: the waiter API serves ${WAITER_API_PATH}` }, "not_found");
      return;
    }
    const client = req.socket.remoteAddress ?? "unknown";
    const token = limiter.take(client);
    if (!token.ok) {
      reply(res, 429, { error: "too many requests from this address" }, "rate_limited", {
        "retry-after": String(token.retryAfterSeconds),
      });
      return;
    }
    const parsed = parseWaitParams(url.searchParams, { defaultTimeoutSeconds, maxTimeoutSeconds });
    if (!parsed.ok) {
      reply(res, 400, { error: parsed.message }, "bad_request");
      return;
    }
    const { timeoutSeconds } = parsed;
    const query = await authorized(req, res, parsed.query);
    if (query === undefined || res.destroyed) return;
    const first = ask(query);
    if (first instanceof Error) {
      log.error({ err: first, pod: `${query.namespace}/${query.pod}` }, "waiter API: answering failed");
      reply(res, 500, { error: "internal error while answering; retry" }, "error");
      return;
    }
    if (first.ready || timeoutSeconds === 0 || closing) {
      reply(res, 200, answerBody(first), first.ready ? "ready" : "not_ready");
      return;
    }
    if (held.size >= maxLongPolls) {
      reply(res, 429, { error: "too many waiters held at once; retry" }, "rate_limited", { "retry-after": "2" });
      return;
    }
    hold(req, res, query, first, timeoutSeconds);
  }

  function hold(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    query: WaitQuery,
    first: WaitAnswer,
    timeoutSeconds: number,
  ): void {
    const entry: Held = {
      query,
      reason: first.reason,
      finish: (answer, result) => {
        release();
        reply(res, 200, answerBody(answer), result);
      },
    };
    const timer = setTimeout(() => {
      const answer = ask(query);
      entry.finish(
        answer instanceof Error ? first : answer,
        answer instanceof Error || !answer.ready ? "timeout" : "ready",
      );
    }, timeoutSeconds * 1000);
    const migratorKey = objectKey(query.namespace, query.migrator);
    const podKey = objectKey(query.namespace, query.pod);
    const release = (): void => {
      if (!held.delete(entry)) return;
      byMigrator.remove(migratorKey, entry);
      byPod.remove(podKey, entry);
      clearTimeout(timer);
      waiterLongPolls.dec();
    };
    // The client went away (pod deleted, waiter killed): forget the request.
    res.on("close", release);
    req.on("error", release);
    held.add(entry);
    byMigrator.add(migratorKey, entry);
    byPod.add(podKey, entry);
    waiterLongPolls.inc();
  }

  return {
    server,
    get held() {
      return held.size;
    },
    listen: (port, host, reusePort) => listen(server, port, host, reusePort),
    async close() {
      closing = true;
      unsubscribe();
      // Held waiters get the current state now; they re-poll and reach another replica.
      for (const h of [...held]) {
        const answer = ask(h.query);
        h.finish(
          answer instanceof Error ? { ready: false, reason: "ShuttingDown", message: "replica shutting down" } : answer,
          "shutdown",
        );
      }
      await close(server);
    },
  };
}

/** Held long-polls grouped by an object key. */
class Index {
  readonly #sets = new Map<string, Set<Held>>();
  add(key: string, entry: Held): void {
    let set = this.#sets.get(key);
    if (set === undefined) this.#sets.set(key, (set = new Set()));
    set.add(entry);
  }
  remove(key: string, entry: Held): void {
    const set = this.#sets.get(key);
    if (set?.delete(entry) && set.size === 0) this.#sets.delete(key);
  }
  collect(key: string, into: Set<Held>): void {
    for (const entry of this.#sets.get(key) ?? []) into.add(entry);
  }
}
