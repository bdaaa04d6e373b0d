// The reconciler's Service, on loopback: a TCP proxy with a stable port in front of the reconciler
// replicas (the plugin's `reconciler-url` points here, so waiters survive a replica restart on a
// new port, and reach whichever replica is up, as kube-proxy spreads connections over endpoints).
// `pause()` makes it unreachable — new connections are reset and open ones cut — until `resume()`.
import net from "node:net";

export class ServiceProxy {
  readonly port: number;
  readonly #server: net.Server;
  readonly #open = new Set<net.Socket>();
  #backends: number[] = [];
  #next = 0;
  #paused = false;
  /** Connections accepted and forwarded to a backend. */
  forwarded = 0;
  /** Connections refused (paused, or no backend answered). */
  refused = 0;

  private constructor(server: net.Server, port: number) {
    this.#server = server;
    this.port = port;
  }

  static async start(backends: number[] = []): Promise<ServiceProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const address = server.address();
    const proxy = new ServiceProxy(server, typeof address === "object" && address ? address.port : 0);
    proxy.setBackends(backends);
    server.on("connection", (socket) => proxy.#accept(socket));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The endpoints (loopback ports), like the Service's EndpointSlice. */
  setBackends(ports: number[]): void {
    this.#backends = [...ports];
  }

  pause(): void {
    this.#paused = true;
    for (const s of this.#open) s.destroy();
  }

  resume(): void {
    this.#paused = false;
  }

  async close(): Promise<void> {
    for (const s of this.#open) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: net.Socket): void {
    this.#open.add(client);
    client.on("close", () => this.#open.delete(client));
    client.on("error", () => client.destroy());
    if (this.#paused || this.#backends.length === 0) {
      this.refused++;
      client.resetAndDestroy();
      return;
    }
    client.pause();
    const order = this.#backends.map((_, i) => this.#backends[(this.#next + i) % this.#backends.length] as number);
    this.#next = (this.#next + 1) % Math.max(1, this.#backends.length);
    this.#connect(client, order);
  }

  /** Tries each endpoint in turn, like a client retrying a dead endpoint. */
  #connect(client: net.Socket, ports: number[]): void {
    const [port, ...rest] = ports;
    if (port === undefined || this.#paused || client.destroyed) {
      this.refused++;
      if (!client.destroyed) client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host: "127.0.0.1", port });
    this.#open.add(upstream);
    upstream.on("close", () => this.#open.delete(upstream));
    upstream.once("error", () => {
      upstream.destroy();
      if (!connected) this.#connect(client, rest);
      else client.destroy();
    });
    let connected = false;
    upstream.once("connect", () => {
      connected = true;
      this.forwarded++;
      client.pipe(upstream).pipe(client);
      client.resume();
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
  }
}
