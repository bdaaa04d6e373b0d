// Loopback ports for the processes the tests start. Everything the tests run listens on 127.0.0.1.
import net from "node:net";

/** A port that was free a moment ago (bind to port 0, read it, close). Another process can take
 *  it before we use it, so start-up code retries with new ports on "address in use". */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("no port"))));
    });
  });
}

/** Several distinct free ports at once. */
export async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}
