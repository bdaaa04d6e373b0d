import t from "tap";
import net from "node:net";
import { request } from "undici";
import { WAITER_API_PATH } from "@digest-migrations/shared";
import { createLogger } from "./log.ts";
import { FakeOracle, waitFor } from "./testing.ts";
import { createWaiterApi } from "./waiter-api.ts";
import type { WaiterApiOptions } from "./waiter-api.ts";

const UID = "0b4f4f8e-6a55-4a56-9d1c-0d6a7c1f2a3b";
const DIGEST = `sha256:${"a".repeat(64)}`;
const silent = createLogger({ level: "silent" });

async function start(t: { teardown(fn: () => unknown): void }, options: Partial<WaiterApiOptions> = {}) {
  const oracle = new FakeOracle();
  const api = createWaiterApi({ oracle, log: silent, ...options });
  const address = await api.listen(0, "127.0.0.1");
  const base = `http://127.0.0.1:${address.port}`;
  t.teardown(() => api.close());
  return { oracle, api, base };
}

function waitUrl(base: string, params: Record<string, string> = {}): string {
  const query = new URLSearchParams({
    namespace: "shop",
    pod: "web-7d9f-abcde",
    podUID: UID,
    migrator: "web",
    container: "app",
    ...params,
  });
  return `${base}${WAITER_API_PATH}?${query.toString()}`;
}

async function get(url: string, init: Parameters<typeof request>[1] = {}) {
  const res = await request(url, init);
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
  };
}

t.test("answers at once when the pod is released", async (t) => {
  const { oracle, base } = await start(t);
  oracle.set("web-7d9f-abcde", { ready: true, reason: "Migrated", message: "migrated", digest: DIGEST });
  const started = Date.now();
  const res = await get(waitUrl(base));
  t.equal(res.status, 200);
  t.same(res.body, { ready: true, reason: "Migrated", message: "migrated", digest: DIGEST });
  t.ok(Date.now() - started < 1000, "no long-poll when ready");
  t.equal(res.headers["cache-control"], "no-store");
  t.same(oracle.queries.at(-1), {
    namespace: "shop",
    pod: "web-7d9f-abcde",
    podUID: UID,
    migrator: "web",
    container: "app",
  });
});

t.test("holds a long-poll until onChange makes the pod ready", async (t) => {
  const { oracle, api, base } = await start(t);
  oracle.set("web-7d9f-abcde", { ready: false, reason: "Running", message: "job web-abc running", digest: DIGEST });
  const pending = get(waitUrl(base, { timeoutSeconds: "30" }));
  await waitFor("the request to be held", () => api.held === 1);
  // A change elsewhere that leaves this pod's answer as it was does not answer it.
  oracle.set("other-pod", { ready: true, reason: "Migrated", message: "" });
  t.equal(api.held, 1, "still held after an unrelated change");
  oracle.set("web-7d9f-abcde", { ready: true, reason: "Migrated", message: "migrated", digest: DIGEST });
  const res = await pending;
  t.equal(res.status, 200);
  t.equal(res.body.ready, true);
  t.equal(api.held, 0);
});

t.test("a burst of changes re-asks only the long-polls naming a changed Migrator or pod", async (t) => {
  const { oracle, api, base } = await start(t);
  const running = { ready: false, reason: "Running", message: "job running", digest: DIGEST };
  for (const pod of ["web-1", "web-2", "api-1"]) oracle.set(pod, running);
  const web1 = get(waitUrl(base, { pod: "web-1" }));
  const web2 = get(waitUrl(base, { pod: "web-2" }));
  const api1 = get(waitUrl(base, { pod: "api-1", migrator: "api" }));
  await waitFor("three requests held", () => api.held === 3);
  const asked = (pod: string) => oracle.queries.filter((q) => q.pod === pod).length;
  const before = { web1: asked("web-1"), web2: asked("web-2"), api1: asked("api-1") };

  // Another namespace's Migrator of the same name, and a pod nobody waits for: nobody is re-asked.
  oracle.notify({ migrators: new Set(["other/web"]), pods: new Set(["shop/web-3"]) });
  t.same({ web1: asked("web-1"), web2: asked("web-2"), api1: asked("api-1") }, before, "no query re-asked");

  // Migrator shop/web changed: both of its pods are re-asked, api-1 is not.
  oracle.set("web-1", { ready: true, reason: "Migrated", message: "migrated", digest: DIGEST });
  oracle.set("web-2", { ready: true, reason: "Migrated", message: "migrated", digest: DIGEST });
  oracle.set("api-1", { ready: true, reason: "Migrated", message: "migrated", digest: DIGEST });
  t.equal(api.held, 0, "each pod answered on its own change");
  t.same([(await web1).body.ready, (await web2).body.ready, (await api1).body.ready], [true, true, true]);

  const web4 = get(waitUrl(base, { pod: "web-4" }));
  await waitFor("web-4 held", () => api.held === 1);
  oracle.fallback = { ready: true, reason: "Migrated", message: "migrated", digest: DIGEST };
  oracle.notify({ migrators: new Set(["shop/api"]), pods: new Set() });
  t.equal(api.held, 1, "a change of Migrator shop/api leaves shop/web's waiter held");
  oracle.notify({ migrators: new Set(["shop/web"]), pods: new Set() });
  t.equal(api.held, 0, "a change of Migrator shop/web answers it");
  t.equal((await web4).body.ready, true);
});

t.test("answers a held long-poll early when the reason changes", async (t) => {
  const { oracle, api, base } = await start(t);
  oracle.set("web-7d9f-abcde", { ready: false, reason: "Probing", message: "probe pod pulling" });
  const pending = get(waitUrl(base));
  await waitFor("the request to be held", () => api.held === 1);
  oracle.set("web-7d9f-abcde", { ready: false, reason: "Running", message: "job running", digest: DIGEST });
  const res = await pending;
  t.same(res.body, { ready: false, reason: "Running", message: "job running", digest: DIGEST });
});

t.test("answers the current not-ready state when the timeout passes, capped at the maximum", async (t) => {
  const { oracle, api, base } = await start(t, { maxTimeoutSeconds: 1 });
  oracle.set("web-7d9f-abcde", { ready: false, reason: "Running", message: "job running" });
  const started = Date.now();
  const res = await get(waitUrl(base, { timeoutSeconds: "3600" }));
  const elapsed = Date.now() - started;
  t.equal(res.status, 200);
  t.same(res.body, { ready: false, reason: "Running", message: "job running" });
  t.ok(elapsed >= 900 && elapsed < 15_000, `answered after the capped timeout (${elapsed} ms)`);
  t.equal(api.held, 0);
});

t.test("timeoutSeconds=0 answers at once", async (t) => {
  const { base } = await start(t);
  const res = await get(waitUrl(base, { timeoutSeconds: "0" }));
  t.same(res.body, { ready: false, reason: "PodNotFound", message: "pod not in cache" });
});

t.test("never returns fields beyond ready, reason, message, digest", async (t) => {
  const { oracle, base } = await start(t);
  oracle.set("web-7d9f-abcde", {
    ready: true,
    reason: "Migrated",
    message: "ok",
    secret: "hunter2",
  } as unknown as { ready: boolean; reason: string; message: string });
  const res = await get(waitUrl(base));
  t.same(Object.keys(res.body).sort(), ["message", "ready", "reason"]);
});

t.test("rejects bad parameters with 400 and a message naming the problem", async (t) => {
  const { base } = await start(t);
  const cases: { name: string; url: string; expect: RegExp }[] = [
    { name: "missing namespace", url: waitUrl(base).replace("namespace=shop&", ""), expect: /namespace: is required/ },
    { name: "upper-case pod", url: waitUrl(base, { pod: "Web" }), expect: /pod: must be a DNS-1123 subdomain/ },
    {
      name: "long container",
      url: waitUrl(base, { container: "c".repeat(64) }),
      expect: /container: must be at most 63/,
    },
    {
      name: "namespace with a dot",
      url: waitUrl(base, { namespace: "a.b" }),
      expect: /namespace: must be a DNS-1123 label/,
    },
    { name: "bad uid", url: waitUrl(base, { podUID: "not-a-uid" }), expect: /podUID: must be a UUID/ },
    {
      name: "negative timeout",
      url: waitUrl(base, { timeoutSeconds: "-1" }),
      expect: /timeoutSeconds: must be a non-negative integer/,
    },
    { name: "unknown parameter", url: waitUrl(base, { podName: "x" }), expect: /unknown parameter "podName"/ },
    { name: "repeated parameter", url: `${waitUrl(base)}&pod=other`, expect: /parameter "pod" given more than once/ },
    { name: "empty migrator", url: waitUrl(base, { migrator: "" }), expect: /migrator: must not be empty/ },
  ];
  for (const c of cases) {
    const res = await get(c.url);
    t.equal(res.status, 400, c.name);
    t.match(String(res.body.error), c.expect, c.name);
  }
});

t.test("is read-only and bounded", async (t) => {
  const { base } = await start(t);
  for (const method of ["POST", "PUT", "DELETE", "PATCH"] as const) {
    const res = await get(waitUrl(base), { method });
    t.equal(res.status, 405, method);
    t.equal(res.headers.allow, "GET", `${method} names the allowed method`);
  }
  const long = await get(waitUrl(base, { pod: `p${"x".repeat(3000)}` }));
  t.equal(long.status, 414, "URL longer than the cap");
  const body = await get(waitUrl(base), { method: "GET", body: "x".repeat(100) });
  t.equal(body.status, 413, "a body on GET is refused");
  const notFound = await get(`${base}/v1/other`);
  t.equal(notFound.status, 404);
});

t.test("a chunked body is refused without being read", async (t) => {
  const { base } = await start(t);
  const { port } = new URL(base);
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(Number(port), "127.0.0.1", () => {
      socket.write(`GET ${WAITER_API_PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`);
    });
    let data = "";
    socket.on("data", (chunk: Buffer) => (data += chunk.toString()));
    socket.on("end", () => resolve(data));
    socket.on("error", reject);
  });
  t.match(raw, /^HTTP\/1\.1 413/);
});

t.test("rate-limits a burst from one address with 429 and Retry-After", async (t) => {
  let now = 1_000_000;
  const { base } = await start(t, { rateLimit: { burst: 3, perSecond: 0.5 }, now: () => now });
  const url = waitUrl(base, { timeoutSeconds: "0" });
  const statuses: number[] = [];
  let retryAfter: unknown;
  for (let i = 0; i < 5; i++) {
    const res = await get(url);
    statuses.push(res.status);
    if (res.status === 429) retryAfter = res.headers["retry-after"];
  }
  t.same(statuses, [200, 200, 200, 429, 429]);
  t.equal(retryAfter, "2", "one token refills in 2 s at 0.5/s");
  now += 2000;
  t.equal((await get(url)).status, 200, "a token is back after Retry-After");
});

t.test("caps the long-polls held at once", async (t) => {
  const { oracle, api, base } = await start(t, { maxLongPolls: 2 });
  oracle.set("web-7d9f-abcde", { ready: false, reason: "Running", message: "job running" });
  const first = get(waitUrl(base));
  const second = get(waitUrl(base));
  await waitFor("two held long-polls", () => api.held === 2);
  const third = await get(waitUrl(base));
  t.equal(third.status, 429);
  t.equal(third.headers["retry-after"], "2");
  oracle.set("web-7d9f-abcde", { ready: true, reason: "Migrated", message: "migrated" });
  t.same([(await first).body.ready, (await second).body.ready], [true, true]);
  t.equal((await get(waitUrl(base))).status, 200, "a slot is free again");
});

t.test("forgets a long-poll whose client went away", async (t) => {
  const { api, base } = await start(t);
  const controller = new AbortController();
  const pending = request(waitUrl(base), { signal: controller.signal });
  await waitFor("the request to be held", () => api.held === 1);
  controller.abort();
  await t.rejects(pending);
  await waitFor("the held request to be released", () => api.held === 0);
});

t.test("close answers held long-polls with the current state", async (t) => {
  const oracle = new FakeOracle();
  const api = createWaiterApi({ oracle, log: silent });
  const { port } = await api.listen(0, "127.0.0.1");
  const pending = get(waitUrl(`http://127.0.0.1:${port}`));
  await waitFor("the request to be held", () => api.held === 1);
  const closing = api.close();
  const res = await pending;
  t.equal(res.status, 200);
  t.equal(res.body.reason, "PodNotFound");
  await closing;
  t.equal(oracle.listeners, 0, "unsubscribed from the oracle");
});

t.test("waiter authentication: a pod's own token, reviewed, answers only about that pod", async (t) => {
  const TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
  const OTHER = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ5In0.c2lnbmF0dXJl";
  const reviewed: string[] = [];
  const reviewer = {
    review: async (token: string) => {
      reviewed.push(token);
      if (token === TOKEN) return { namespace: "shop", serviceAccount: "web", pod: "web-7d9f-abcde", podUID: UID };
      if (token === OTHER) return { namespace: "shop", serviceAccount: "web", pod: "web-other", podUID: UID };
      if (token === "down")
        return { status: 503 as const, message: "the API server could not review the token now; retry" };
      return {
        status: 401 as const,
        message: "the API server did not accept the token (TokenReview): token is expired",
      };
    },
  };
  const { oracle, base } = await start(t, { auth: { mode: "required", reviewer } });
  oracle.set("web-7d9f-abcde", { ready: true, reason: "Migrated", message: "migrated", digest: DIGEST });
  const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

  const none = await get(waitUrl(base));
  t.equal(none.status, 401, "no token");
  t.match(
    none.body.error,
    /^no token: this waiter API answers a pod only with its own projected service-account token/,
  );
  t.match(none.headers["www-authenticate"], /^Bearer /);
  t.equal((await get(waitUrl(base), { headers: { authorization: "Basic eDp5" } })).status, 401, "not a bearer token");
  const expired = await get(waitUrl(base), bearer("expired.token.x"));
  t.same(
    [expired.status, expired.body.error],
    [401, "the API server did not accept the token (TokenReview): token is expired"],
  );
  const other = await get(waitUrl(base), bearer(OTHER));
  t.same([other.status, other.body.error], [403, "the token is bound to pod shop/web-other, not shop/web-7d9f-abcde"]);
  const wrongUid = await get(waitUrl(base, { podUID: "00000000-0000-0000-0000-000000000000" }), bearer(TOKEN));
  t.equal(wrongUid.status, 403, "the uid the question names must be the token's");
  const down = await get(waitUrl(base), bearer("down"));
  t.same([down.status, down.headers["retry-after"]], [503, "2"], "API trouble: retry");

  const own = await get(waitUrl(base), bearer(TOKEN));
  t.same([own.status, own.body.ready], [200, true], "its own pod");
  const withoutUid = new URL(waitUrl(base));
  withoutUid.searchParams.delete("podUID");
  t.equal((await get(withoutUid.href, bearer(TOKEN))).status, 200);
  t.equal(oracle.queries.at(-1)?.podUID, UID, "asked with the token's pod uid");
  for (const res of [none, expired, other, wrongUid, down, own]) {
    t.notMatch(JSON.stringify(res.body), /eyJ/, "no answer carries a token");
  }
  t.ok(reviewed.includes(TOKEN) && !reviewed.includes(""), "tokens reach the reviewer, nothing else");
});

t.test("waiter authentication, optional: a token is checked when sent; none is answered as before", async (t) => {
  const reviewer = { review: async () => ({ status: 401 as const, message: "refused" }) };
  const { oracle, base } = await start(t, { auth: { mode: "optional", reviewer } });
  oracle.set("web-7d9f-abcde", { ready: true, reason: "Migrated", message: "migrated", digest: DIGEST });
  t.equal((await get(waitUrl(base))).status, 200, "no token: answered");
  t.equal((await get(waitUrl(base), { headers: { authorization: "Bearer bad" } })).status, 401, "a bad token: refused");
  const off = await start(t, { auth: { mode: "none", reviewer } });
  off.oracle.set("web-7d9f-abcde", { ready: true, reason: "Migrated", message: "migrated" });
  t.equal((await get(waitUrl(off.base), { headers: { authorization: "Bearer bad" } })).status, 200, "none: ignored");
});
