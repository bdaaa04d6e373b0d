// Starting an HTTP server on a port, for the waiter API and the health/metrics server.
import type http from "node:http";
import type { AddressInfo } from "node:net";

export interface ListenOptions {
  port: number;
  /** Address to bind; undefined means every interface. */
  host?: string;
  /**
   * SO_REUSEPORT: several processes bind the same port and the kernel spreads connections over
   * them. For replicas that share a node's network namespace (hostNetwork), where two replicas on
   * one node would otherwise collide on their ports; any of them answers, as behind a Service.
   */
  reusePort?: boolean;
}

/** Listens and resolves with the bound address (port 0 picks a free one); rejects on EADDRINUSE and the like. */
export function listen(server: http.Server, options: ListenOptions): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: options.port, host: options.host, reusePort: options.reusePort ?? false }, () => {
      server.off("error", reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
