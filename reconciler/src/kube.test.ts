// The leadership fence on the reconcile path's client: with mayWrite false a write is refused before
// anything is sent (the server below counts what arrives); reads always go out.
import http from "node:http";
import type { AddressInfo } from "node:net";
import t from "tap";
import { Kube, KubeConfig, NotLeaderError } from "./kube.ts";

t.test("writes are refused before sending once this replica stops leading; reads are not", async (t) => {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end("{}"));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise((resolve) => server.close(resolve)));
  const { port } = server.address() as AddressInfo;
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: "c", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: "u" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  let leading = false;
  const kube = new Kube(config, { mayWrite: () => leading });

  await t.rejects(kube.create("/api/v1/namespaces/a/pods", {}), NotLeaderError, "POST refused");
  await t.rejects(kube.patch("/api/v1/namespaces/a/pods/p", {}), NotLeaderError, "PATCH refused");
  await t.rejects(kube.replace("/api/v1/namespaces/a/pods/p", {}), NotLeaderError, "PUT refused");
  await t.rejects(kube.remove("/api/v1/namespaces/a/pods/p"), NotLeaderError, "DELETE refused");
  t.same(seen, [], "nothing was sent");
  await kube.get("/api/v1/namespaces/a/pods/p");
  t.same(seen, ["GET /api/v1/namespaces/a/pods/p"], "a read goes out");

  leading = true;
  await kube.create("/api/v1/namespaces/a/pods", {});
  t.same(seen.at(-1), "POST /api/v1/namespaces/a/pods", "a leader's write goes out");
  t.same(await new Kube(config).create("/api/v1/namespaces/a/pods", {}), {}, "an unfenced client always writes");
});
