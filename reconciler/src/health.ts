// The metrics port: /healthz (liveness: the process answers), /readyz (readiness: the
// controller's caches are synced, so the waiter API answers from a complete view), /metrics
// (Prometheus text). Separate from the waiter API so probes and scrapes never compete with
// waiters for rate limits.
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { close, listen } from "./cli.ts";
import type { Logger } from "./log.ts";

export interface HealthOptions {
  /** Readiness: true once the caches are synced. */
  ready(): boolean;
  /** Liveness beyond "the event loop answers"; default always true. */
  live?(): boolean;
  registry: Registry;
  log: Logger;
}

export interface HealthServer {
  readonly server: http.Server;
  listen(port: number, host?: string, reusePort?: boolean): Promise<AddressInfo>;
  close(): Promise<void>;
}

export function createHealthServer(options: HealthOptions): HealthServer {
  const server = http.createServer((req, res) => {
    const send = (status: number, body: string, type = "text/plain; charset=utf-8"): void => {
      res.writeHead(status, {
        "content-type": type,
        "cache-control": "no-store",
        "content-length": Buffer.byteLength(body),
      });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      send(405, "method not allowed\n");
      return;
    }
    const path = new URL(req.url ?? "/", "http://health.invalid").pathname;
    switch (path) {
      case "/healthz":
        if (options.live && !options.live()) send(503, "not live\n");
        else send(200, "ok\n");
        return;
      case "/readyz":
        if (options.ready()) send(200, "ok\n");
        else send(503, "caches not synced\n");
        return;
      case "/metrics":
        options.registry.metrics().then(
          (text) => send(200, text, options.registry.contentType),
          (error: unknown) => {
            options.log.error({ err: error }, "collecting metrics failed");
            send(500, "collecting metrics failed\n");
          },
        );
        return;
      default:
        send(404, "not found\n");
    }
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  return {
    server,
    listen: (port, host, reusePort) => listen(server, port, host, reusePort),
    close: () => close(server),
  };
}
