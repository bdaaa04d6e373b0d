// The scale benchmark's waiters (long-polls.ts) against the reconciler's real waiter API over a
// fake oracle: the requests are the waiter's, each pod holds one long-poll, a not-ready answer is
// re-polled, a 429 retried after Retry-After, a ready answer ends the pod's poll, and stop() closes
// every socket.
import t from "tap";
import type { IncomingMessage } from "node:http";
import { createLogger } from "../../reconciler/src/log.ts";
import { FakeOracle } from "../../reconciler/src/testing.ts";
import { createWaiterApi } from "../../reconciler/src/waiter-api.ts";
import type { WaiterApiOptions } from "../../reconciler/src/waiter-api.ts";
import { waitFor } from "../kit/wait.ts";
import { parseScaleSizes } from "./bench.ts";
import { WaiterLongPolls } from "./long-polls.ts";
import type { LongPollTarget } from "./long-polls.ts";

const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;
const targets: LongPollTarget[] = [
  { namespace: "ns", pod: "a", podUID: "0b4f4f8e-6a55-4a56-9d1c-0d6a7c1f2a3a", migrator: "m1", container: "app" },
  { namespace: "ns", pod: "b", podUID: "0b4f4f8e-6a55-4a56-9d1c-0d6a7c1f2a3b", migrator: "m1", container: "app" },
  { namespace: "ns", pod: "c", podUID: "0b4f4f8e-6a55-4a56-9d1c-0d6a7c1f2a3c", migrator: "m2", container: "app" },
];
const digestOf = (target: LongPollTarget): string => (target.migrator === "m1" ? D1 : D2);

async function start(t: { teardown(fn: () => unknown): void }, options: Partial<WaiterApiOptions> = {}) {
  const oracle = new FakeOracle();
  oracle.fallback = { ready: false, reason: "Pending", message: "waiting for the Job" };
  const api = createWaiterApi({ oracle, log: createLogger({ level: "silent" }), ...options });
  const urls: string[] = [];
  api.server.on("request", (req: IncomingMessage) => urls.push(req.url ?? ""));
  const address = await api.listen(0, "127.0.0.1");
  t.teardown(() => api.close());
  return { oracle, api, urls, base: `http://127.0.0.1:${address.port}/` };
}

t.test("one long-poll per pod, re-polled until ready, sockets closed at the end", async (t) => {
  const { oracle, api, urls, base } = await start(t);
  const released: string[] = [];
  const polls = new WaiterLongPolls(base, targets, { onReady: (target) => released.push(target.pod) });
  t.teardown(() => polls.stop());
  polls.start(digestOf);
  await waitFor(() => api.held === 3, { what: "three long-polls held", timeoutMs: 5000, intervalMs: 10 });
  t.equal(polls.held, 3);
  t.equal(polls.peak.held, 3);
  t.equal(polls.sockets, 3, "one connection per pod");
  t.same(urls.sort(), [
    "/v1/wait?namespace=ns&pod=a&migrator=m1&container=app&timeoutSeconds=30&podUID=0b4f4f8e-6a55-4a56-9d1c-0d6a7c1f2a3a",
    "/v1/wait?namespace=ns&pod=b&migrator=m1&container=app&timeoutSeconds=30&podUID=0b4f4f8e-6a55-4a56-9d1c-0d6a7c1f2a3b",
    "/v1/wait?namespace=ns&pod=c&migrator=m2&container=app&timeoutSeconds=30&podUID=0b4f4f8e-6a55-4a56-9d1c-0d6a7c1f2a3c",
  ]);

  // A changed reason answers early; the waiter polls again (after its 1 s pacing).
  oracle.set("a", { ready: false, reason: "Running", message: "Job running", digest: D1 });
  await waitFor(() => polls.notReadyReasons.get("Running") === 1, { what: "a's not-ready answer", intervalMs: 10 });
  await waitFor(() => api.held === 3 && urls.length === 4, { what: "a polling again", timeoutMs: 5000 });

  oracle.set("a", { ready: true, reason: "Migrated", message: "migrated", digest: D1 });
  oracle.set("b", { ready: true, reason: "Migrated", message: "migrated", digest: D1 });
  oracle.set("c", { ready: true, reason: "Migrated", message: "migrated", digest: D1 });
  await waitFor(() => polls.done, { what: "every pod answered ready", timeoutMs: 5000, intervalMs: 10 });
  t.same(released.sort(), ["a", "b", "c"]);
  t.same([...polls.readyAt.keys()].sort(), ["a", "b", "c"]);
  t.equal(polls.wrongDigest, 1, "c was answered with m1's digest");
  t.same(Object.fromEntries(polls.outcomes), { "not ready": 1, ready: 3 });
  t.equal(polls.held, 0);

  await polls.stop();
  t.equal(polls.sockets, 0, "every socket closed");
  t.equal(api.held, 0);
});

t.test("a 429 is retried after Retry-After, as the waiter does", async (t) => {
  const { oracle, api, base } = await start(t, { maxLongPolls: 2 });
  const polls = new WaiterLongPolls(base, targets);
  t.teardown(() => polls.stop());
  polls.start(digestOf);
  await waitFor(() => (polls.outcomes.get("HTTP 429") ?? 0) >= 1 && api.held === 2, {
    what: "two held and one refused",
    timeoutMs: 5000,
    intervalMs: 10,
  });
  for (const pod of ["a", "b", "c"]) oracle.set(pod, { ready: true, reason: "Migrated", message: "", digest: D1 });
  await waitFor(() => polls.done, { what: "every pod answered ready", timeoutMs: 10_000 });
  t.equal(polls.outcomes.get("ready"), 3);
  await polls.stop();
  t.equal(polls.sockets, 0);
});

t.test("--scale sizes", async (t) => {
  t.same(parseScaleSizes("40x1000,200×5000"), [
    { migrators: 40, pods: 1000 },
    { migrators: 200, pods: 5000 },
  ]);
  t.same(parseScaleSizes("40x1000:pinned"), [{ migrators: 40, pods: 1000, pinned: true }]);
  t.throws(() => parseScaleSizes("40"), /--scale/);
  t.throws(() => parseScaleSizes("10x5"), /Migrators ≤ pods/);
  t.throws(() => parseScaleSizes("0x5"), /--scale/);
});
