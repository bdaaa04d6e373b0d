// What the reconciler's two processes (main.ts, waiter.ts) share about their command line and their
// HTTP servers: a bad flag is a UsageError (the process prints one line and exits 2), and a server's
// listen/close as promises. Kept small and free of imports: the waiter's bundle includes it.
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

export class UsageError extends Error {}

/** Exit code of a bad command line. */
export const EXIT_USAGE = 2;

/**
 * The settings `parse` reads from the command line, or the exit code to end with: 0 after --help or
 * --version, EXIT_USAGE after printing a UsageError as `<command>: <message>` on stderr.
 */
export function settingsOrExit<T>(command: string, parse: () => T | "exit"): T | number {
  try {
    const settings = parse();
    return settings === "exit" ? 0 : settings;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${command}: ${error.message}\n(see ${command} --help)\n`);
    return EXIT_USAGE;
  }
}

/**
 * Listens on `port` (0: any free port) and resolves with the address, or rejects with the listen error.
 * `reusePort` (SO_REUSEPORT): several processes bind the same port and the kernel spreads connections
 * over them — for replicas sharing a node's network namespace (hostNetwork), which would otherwise
 * collide on their ports; any of them answers, as behind a Service.
 */
export function listen(server: Server, port: number, host?: string, reusePort = false): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port, host, reusePort }, () => {
      server.off("error", reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Stops accepting connections, closes idle keep-alive ones, and resolves once the server is closed. */
export function close(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));
    server.closeIdleConnections();
  });
}
