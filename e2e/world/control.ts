// Fault injection into the world, for the tests that restart what a cluster runs on: the process
// that owns the world (e2e/world/run.ts) serves these on 127.0.0.1, and a test process asks.
//
//   POST /kubelet/restart     SIGTERM the kubelet, start it again, wait for the node to be Ready
//   POST /containerd/restart  SIGTERM containerd (its shims and containers keep running), start it again
//   POST /apiserver/stop      stop kube-apiserver (its port stays reserved)
//   POST /apiserver/start     start it again and wait for /readyz
//
// These disturb every test running at the time: the files that use them run after the others,
// one at a time (npm test's second phase).
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Cluster } from "../cluster/cluster.ts";
import type { RealNode } from "../node/node.ts";

export type Fault = "kubelet/restart" | "containerd/restart" | "apiserver/stop" | "apiserver/start";

export async function serveControl(cluster: Cluster, node: RealNode): Promise<{ url: string; close(): Promise<void> }> {
  const actions: Record<Fault, () => Promise<void>> = {
    "kubelet/restart": () => node.kubelet.restart(),
    "containerd/restart": () => node.containerd.restart(),
    "apiserver/stop": () => cluster.stopApiserver(),
    "apiserver/start": () => cluster.startApiserver(),
  };
  let busy = Promise.resolve();
  const server = http.createServer((req, res) => {
    const action = actions[(req.url ?? "").slice(1) as Fault];
    if (req.method !== "POST" || !action) {
      res.writeHead(404).end("unknown fault\n");
      return;
    }
    // One fault at a time, in the order asked.
    busy = busy.then(async () => {
      try {
        await action();
        res.writeHead(200).end("done\n");
      } catch (err) {
        res.writeHead(500).end(`${err instanceof Error ? err.message : String(err)}\n`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  server.unref();
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Asks the world's owner to inject `fault`; resolves once it is done. */
export async function inject(controlUrl: string, fault: Fault): Promise<void> {
  const res = await fetch(`${controlUrl}/${fault}`, { method: "POST", signal: AbortSignal.timeout(180_000) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${fault}: HTTP ${res.status}: ${text.trim()}`);
}
