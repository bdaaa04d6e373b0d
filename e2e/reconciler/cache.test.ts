// The reconciler's caches against the weak spots of list+watch, on a real kube-apiserver: a watch that
// goes silent (a connection that stays open but delivers nothing), a resourceVersion that has been
// compacted away meanwhile (410 Gone), and changes made during the gap. The reflector talks to the API
// server through a TCP proxy the test can freeze; the API server keeps no watch cache for pods and
// compacts etcd every 2 s, so a watch resumed from a resourceVersion older than that gets 410.
import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import t from "tap";
import type { KubeObject } from "@digest-migrations/shared";
import { Reflector } from "../../reconciler/src/cache.ts";
import { Kube, loadKubeConfig } from "../../reconciler/src/kube.ts";
import { createLogger } from "../../reconciler/src/log.ts";
import { startCluster } from "../cluster/cluster.ts";
import { waitFor } from "../kit/wait.ts";
import { KubeClient } from "../kit/client.ts";

/** A TCP proxy that can hold every byte in both directions while frozen, as a stalled network would. */
class FreezableProxy {
  frozen = false;
  readonly #server: net.Server;
  readonly #held: (() => void)[] = [];
  readonly #sockets = new Set<net.Socket>();

  constructor(target: URL) {
    this.#server = net.createServer((client) => {
      const upstream = net.connect(Number(target.port), target.hostname);
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket);
        socket.on("close", () => this.#sockets.delete(socket));
        socket.on("error", () => socket.destroy());
      }
      const forward = (from: net.Socket, to: net.Socket): void => {
        from.on("data", (chunk: Buffer) => {
          if (this.frozen) this.#held.push(() => to.write(chunk));
          else to.write(chunk);
        });
        from.on("end", () => to.end());
      };
      forward(client, upstream);
      forward(upstream, client);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return (this.#server.address() as net.AddressInfo).port;
  }

  thaw(): void {
    this.frozen = false;
    for (const write of this.#held.splice(0)) write();
  }

  close(): void {
    for (const socket of this.#sockets) socket.destroy();
    this.#server.close();
  }
}

const cluster = await startCluster({
  apiserverArgs: ["--watch-cache-sizes=pods#0", "--etcd-compaction-interval=2s"],
});
t.teardown(() => cluster.stop());
const admin = KubeClient.fromFile(cluster.adminKubeconfig);

/** Pod names and their `phase` label, as the API server has them now. */
async function truth(namespace: string): Promise<string> {
  const list = await admin.get<{ items: KubeObject[] }>(`/api/v1/namespaces/${namespace}/pods`);
  return summary(list.items);
}
function summary(pods: KubeObject[]): string {
  return pods
    .map((p) => `${p.metadata.name ?? ""}:${p.metadata.labels?.["phase"] ?? ""}`)
    .sort()
    .join(",");
}
const podObject = (namespace: string, name: string): KubeObject => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace, labels: { phase: "one" } },
  spec: { containers: [{ name: "app", image: "registry.example/app:latest" }] },
});

t.test(
  "a silent watch is resumed, a compacted resourceVersion relists, and nothing from the gap is lost",
  async (t) => {
    const namespace = "cache-gap";
    await cluster.ensureNamespace(namespace);
    for (const name of ["a", "b", "c"]) await admin.createObject(podObject(namespace, name));

    const proxy = new FreezableProxy(new URL(cluster.server));
    t.teardown(() => proxy.close());
    const port = await proxy.listen();
    const kubeconfig = path.join(path.dirname(cluster.adminKubeconfig), "through-proxy.kubeconfig");
    writeFileSync(
      kubeconfig,
      readFileSync(cluster.adminKubeconfig, "utf8").replaceAll(cluster.server, `https://127.0.0.1:${port}`),
    );
    const reflector = new Reflector<KubeObject>({
      kube: new Kube(loadKubeConfig(kubeconfig)),
      apiVersion: "v1",
      kind: "Pod",
      path: `/api/v1/namespaces/${namespace}/pods`,
      log: createLogger({ level: "silent" }),
      watchdogSeconds: 2,
      maxBackoffMs: 1000,
    });
    t.teardown(() => reflector.stop());
    await reflector.start();
    t.equal(summary(reflector.list(namespace)), "a:one,b:one,c:one", "synced");
    const oldVersion = (
      await admin.get<{ metadata: { resourceVersion: string } }>(`/api/v1/namespaces/${namespace}/pods`)
    ).metadata.resourceVersion;

    // The network stalls: the watch connection stays open and delivers nothing.
    proxy.frozen = true;
    await admin.deleteObject("v1", "Pod", namespace, "a");
    for (const name of ["d", "e", "f"]) await admin.createObject(podObject(namespace, name));
    await admin.patchObject("v1", "Pod", namespace, "b", { metadata: { labels: { phase: "two" } } });
    await waitFor(async () => reflector.stats.silent >= 1, {
      what: "the watchdog to notice the silent watch",
      timeoutMs: 20_000,
    });

    // Meanwhile etcd compacts past what the reflector last saw: resuming from there is 410 Gone.
    await waitFor(
      async () => {
        const res = await cluster.request<{ type?: string; object?: { code?: number } }>(
          "GET",
          `/api/v1/namespaces/${namespace}/pods?watch=1&resourceVersion=${oldVersion}&timeoutSeconds=1`,
        );
        return res.status === 410 || JSON.stringify(res.body ?? "").includes('"code":410');
      },
      { what: `resourceVersion ${oldVersion} to be compacted`, timeoutMs: 30_000 },
    );
    t.equal(summary(reflector.list(namespace)), "a:one,b:one,c:one", "the cache has not seen the gap yet");

    proxy.thaw();
    const want = await truth(namespace);
    t.equal(want, "b:two,c:one,d:one,e:one,f:one");
    await waitFor(async () => summary(reflector.list(namespace)) === want, {
      what: "the cache to converge on the API server's state",
      timeoutMs: 30_000,
      describe: async () => `cache ${summary(reflector.list(namespace))}; stats ${JSON.stringify(reflector.stats)}`,
    });
    t.ok(reflector.stats.expired >= 1, `410 Gone seen and handled (stats ${JSON.stringify(reflector.stats)})`);
    t.ok(reflector.stats.lists >= 2, "relisted after 410");
    t.ok(reflector.synced(), "still synced");

    // And it keeps watching: a change after the recovery arrives without another list.
    const lists = reflector.stats.lists;
    await admin.createObject(podObject(namespace, "g"));
    await waitFor(async () => reflector.get(namespace, "g") !== undefined, {
      what: "pod g in the cache",
      timeoutMs: 20_000,
    });
    t.equal(reflector.stats.lists, lists, "delivered by the watch, not a list");
  },
);
