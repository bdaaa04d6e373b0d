import t from "tap";
import { request } from "undici";
import { createHealthServer } from "./health.ts";
import { createLogger } from "./log.ts";
import { migrationsStarted, registry } from "./metrics.ts";

t.test("health, readiness and metrics", async (t) => {
  let ready = false;
  let live = true;
  const health = createHealthServer({
    ready: () => ready,
    live: () => live,
    registry,
    log: createLogger({ level: "silent" }),
  });
  const { port } = await health.listen(0, "127.0.0.1");
  t.teardown(() => health.close());
  const get = async (path: string, method: "GET" | "POST" | "HEAD" = "GET") => {
    const res = await request(`http://127.0.0.1:${port}${path}`, { method });
    return { status: res.statusCode, text: await res.body.text(), type: res.headers["content-type"] };
  };

  t.equal((await get("/healthz")).status, 200);
  t.match(await get("/readyz"), { status: 503, text: /caches not synced/ });
  ready = true;
  t.equal((await get("/readyz")).status, 200, "ready once synced");
  live = false;
  t.equal((await get("/healthz")).status, 503, "not live when the liveness check fails");

  migrationsStarted.inc({ namespace: "shop", migrator: "web" });
  const metrics = await get("/metrics");
  t.equal(metrics.status, 200);
  t.match(metrics.type, /^text\/plain/);
  t.match(metrics.text, /digest_migrations_migrations_started_total\{namespace="shop",migrator="web"\} 1/);
  t.match(metrics.text, /digest_migrations_waiter_requests_total/);
  t.match(metrics.text, /digest_migrations_process_resident_memory_bytes/, "default process metrics");

  t.equal((await get("/metrics", "POST")).status, 405);
  live = true;
  t.match(await get("/healthz", "HEAD"), { status: 200, text: "" }, "HEAD answers without a body");
  t.equal((await get("/other")).status, 404);
});
