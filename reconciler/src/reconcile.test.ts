// The executor against an in-memory API: the order of its writes and their preconditions, what it does
// when a write's outcome is not what the plan assumed (a refused pin, an existing Job, a stale status).
// What to write is plan's business (shared/src/plan*.test.ts); this checks how it is written.
import t from "tap";
import type { KubeObject, Migrator, PinRecord, Pod } from "@digest-migrations/shared";
import { NOW, appPod, job, migrator, node, owners, probeFor } from "../../shared/src/plan-builders.ts";
import { IMAGE, PROBE_START_ERROR } from "../../shared/src/testdata/kubelet-statuses.ts";
import { ApiError } from "./kube.ts";
import type { Kube } from "./kube.ts";
import { createLogger } from "./log.ts";
import { StaleCacheError, reconcileMigrator } from "./reconcile.ts";
import type { ReconcileContext, Store } from "./reconcile.ts";

interface Call {
  verb: "patch" | "create" | "remove" | "replace";
  path: string;
  body: unknown;
}

/** A Kube whose writes are recorded; `fail` may answer a call with an ApiError instead. */
function fakeKube(fail: (call: Call) => ApiError | undefined = () => undefined): { kube: Kube; calls: Call[] } {
  const calls: Call[] = [];
  const record = (verb: Call["verb"]) => (path: string, body: unknown) => {
    const call = { verb, path, body };
    calls.push(call);
    const error = fail(call);
    return error === undefined ? Promise.resolve({}) : Promise.reject(error);
  };
  const kube = {
    patch: record("patch"),
    create: record("create"),
    remove: record("remove"),
    replace: record("replace"),
  };
  return { kube: kube as unknown as Kube, calls };
}

function store<T extends KubeObject>(objects: T[]): Store<T> {
  return {
    get: (namespace, name) =>
      objects.find((o) => (o.metadata.namespace ?? "") === (namespace ?? "") && o.metadata.name === name),
    list: (namespace) => objects.filter((o) => namespace === undefined || o.metadata.namespace === namespace),
  };
}

function context(
  kube: Kube,
  m: Migrator,
  pods: Pod[],
  jobs: KubeObject[] = [],
  pins = new Map<string, PinRecord>(),
): ReconcileContext {
  return {
    kube,
    caches: {
      migrators: store([m]),
      pods: store(pods),
      jobs: store(jobs),
      nodes: store([node("node-1")]),
      lookup: owners(),
    },
    log: createLogger({ level: "silent" }),
    identity: "test",
    now: () => NOW,
    probeTimeoutSeconds: 300,
    pins,
  };
}

const conflict = (reason?: string) => new ApiError("HTTP 409", 409, reason ?? "Conflict", {});
const pod = appPod("web-a", { created: 0 });
const probe = probeFor(pod, 5, PROBE_START_ERROR);

t.test(
  "pin first, then the Job, the probe's deletion, the status and its Event, each with its precondition",
  async (t) => {
    const { kube, calls } = fakeKube();
    const ctx = context(kube, migrator(), [pod, probe]);
    const result = await reconcileMigrator(ctx, "shop", "web");
    t.same(
      calls.map((c) => `${c.verb} ${c.path}`),
      [
        "patch /api/v1/namespaces/shop/pods/web-a",
        "create /apis/batch/v1/namespaces/shop/jobs",
        `remove /api/v1/namespaces/shop/pods/${probe.metadata.name}`,
        "replace /apis/migrations.coderanger.net/v1beta1/namespaces/shop/migrators/web/status",
        "create /api/v1/namespaces/shop/events",
      ],
    );
    t.match(calls[0]!.body, {
      metadata: { uid: "uid-web-a" },
      spec: { containers: [{ name: "app", image: IMAGE.pinned }] },
    });
    t.match(calls[2]!.body, { uid: probe.metadata.uid, gracePeriodSeconds: 0 });
    t.match(calls[3]!.body, { metadata: { resourceVersion: "10" }, status: { currentDigest: IMAGE.digest } });
    t.same(ctx.pins.get("uid-web-a"), { container: "app", image: IMAGE.pinned }, "remembered until the cache shows it");
    t.equal(result.requeueAfterMs, 30_000);
  },
);

t.test("a pin refused for the first time: remembered, nothing else written, decide again at once", async (t) => {
  const denied = new ApiError("HTTP 403: image changes are not allowed", 403, "Forbidden", {});
  const { kube, calls } = fakeKube((c) => (c.verb === "patch" ? denied : undefined));
  const ctx = context(kube, migrator(), [pod, probe]);
  t.same(await reconcileMigrator(ctx, "shop", "web"), { requeueAfterMs: 0 });
  t.same(
    calls.map((c) => c.verb),
    ["patch"],
  );
  t.same(ctx.pins.get("uid-web-a"), { container: "app", image: IMAGE.pinned, refused: denied.message });

  calls.length = 0;
  await reconcileMigrator(ctx, "shop", "web");
  t.equal(calls.filter((c) => c.verb === "patch").length, 1, "asked again, once");
  const status = calls.find((c) => c.verb === "replace")?.body as { status: Migrator["status"] };
  t.match(status.status?.conditions?.[0], { reason: "PinFailed", message: /HTTP 403: image changes are not allowed/ });
});

t.test("a Job that exists already is not counted as started; a stale status is a StaleCacheError", async (t) => {
  const pinned = appPod("web-a", { image: IMAGE.pinned });
  const exists = fakeKube((c) =>
    c.verb === "create" && c.path.endsWith("/jobs") ? conflict("AlreadyExists") : undefined,
  );
  const result = await reconcileMigrator(context(exists.kube, migrator(), [pinned]), "shop", "web");
  t.equal(result.requeueAfterMs, 1000, "looked at again soon");
  const stale = fakeKube((c) => (c.verb === "replace" ? conflict() : undefined));
  await t.rejects(
    reconcileMigrator(context(stale.kube, migrator(), [pinned], [job(IMAGE.digest, "active")]), "shop", "web"),
    StaleCacheError,
  );
});

t.test("a deleted Migrator or one the cache no longer has: nothing is written", async (t) => {
  const { kube, calls } = fakeKube();
  t.same(await reconcileMigrator(context(kube, migrator({ deleted: true }), [pod]), "shop", "web"), {});
  t.same(await reconcileMigrator(context(kube, migrator(), [pod]), "shop", "other"), {});
  t.same(calls, []);
});
