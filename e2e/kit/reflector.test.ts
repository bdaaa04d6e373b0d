// ListWatch against a scripted HTTP API: resume from the last resourceVersion, relist on 410 Gone
// and report objects that vanished meanwhile, survive dropped connections.
import http from "node:http";
import type { AddressInfo } from "node:net";
import t from "tap";
import { KubeConfig } from "@kubernetes/client-node";
import type { KubeObject } from "@digest-migrations/shared";
import { KubeClient } from "./client.ts";
import { ListWatch } from "./reflector.ts";
import { waitFor } from "./wait.ts";

const obj = (name: string, rv: string): KubeObject => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: "ns", resourceVersion: rv },
});

t.test("list, watch, resume, 410 relist, disconnect", async (t) => {
  const requests: string[] = [];
  let lists = 0;
  const openWatches = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const watch = url.searchParams.get("watch") === "true";
    const rv = url.searchParams.get("resourceVersion") ?? "";
    requests.push(watch ? `watch@${rv}` : "list");
    res.setHeader("Content-Type", "application/json");
    if (!watch) {
      lists++;
      const items = lists === 1 ? [obj("a", "9")] : [obj("b", "12")];
      res.end(JSON.stringify({ metadata: { resourceVersion: lists === 1 ? "10" : "20" }, items }));
      return;
    }
    const send = (e: unknown): boolean => res.write(JSON.stringify(e) + "\n");
    if (rv === "10") {
      send({ type: "MODIFIED", object: obj("a", "11") });
      send({ type: "ADDED", object: obj("b", "12") });
      send({ type: "BOOKMARK", object: { metadata: { resourceVersion: "13" } } });
      res.end(); // the server ends the watch: the client resumes from 13
    } else if (rv === "13") {
      send({ type: "ERROR", object: { kind: "Status", code: 410, message: "too old resource version" } });
      res.end();
    } else {
      openWatches.add(res);
      res.on("close", () => openWatches.delete(res));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: "u" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  const events: string[] = [];
  const lw = new ListWatch<KubeObject>(new KubeClient(kc), "/api/v1/namespaces/ns/pods", {
    upsert: (o) => events.push(`upsert ${o.metadata.name}@${o.metadata.resourceVersion}`),
    remove: (o) => events.push(`remove ${o.metadata.name}`),
  });
  await lw.start();
  t.teardown(() => lw.stop());
  await waitFor(() => openWatches.size === 1, {
    what: "the watch after the relist",
    describe: () => requests.join(" "),
  });
  t.same(requests, ["list", "watch@10", "watch@13", "list", "watch@20"]);
  t.same(events, ["upsert a@9", "upsert a@11", "upsert b@12", "remove a", "upsert b@12"]);
  t.same(
    lw.items().map((o) => o.metadata.name),
    ["b"],
  );
  t.equal(lw.lists, 2);

  lw.disconnect();
  await waitFor(() => requests.length === 6 && openWatches.size === 1, { what: "a new watch after a disconnect" });
  t.equal(requests[5], "watch@20", "a dropped connection resumes from the last resourceVersion");
});
