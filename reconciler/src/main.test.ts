import t from "tap";
import { KubeConfig } from "@kubernetes/client-node";
import { request } from "undici";
import { createLogger } from "./log.ts";
import { parseReconcilerArgs, runReconciler, UsageError } from "./main.ts";
import type { ControllerLike, ReconcilerSettings } from "./main.ts";
import { FakeOracle } from "./testing.ts";
import { freePort } from "./testing.ts";

const env = { POD_NAMESPACE: "digest-migrations-system" };

function parse(argv: string[], environment: NodeJS.ProcessEnv = env): ReconcilerSettings {
  const settings = parseReconcilerArgs(argv, environment);
  if (settings === "exit") throw new Error("unexpected exit");
  return settings;
}

t.test("defaults and environment fallbacks", (t) => {
  const s = parse([], { ...env, KUBECONFIG: "/tmp/kc", WATCH_NAMESPACES: "a, b", LOG_LEVEL: "debug" });
  t.match(s, {
    kubeconfig: "/tmp/kc",
    namespaces: ["a", "b"],
    leaderElection: true,
    leaderElectionNamespace: "digest-migrations-system",
    leaderElectionId: "digest-migrations-reconciler",
    leaseDurationSeconds: 15,
    renewDeadlineSeconds: 10,
    retryPeriodSeconds: 2,
    waiterPort: 8443,
    metricsPort: 8080,
    logLevel: "debug",
  });
  t.equal(parse([]).kubeconfig, undefined, "in-cluster without --kubeconfig or $KUBECONFIG");
  t.match(parse([]), { watchNodes: true, probePullTimeoutSeconds: 300, jobDefaults: {} }, "no Job defaults: as before");
  t.same(parse([]).namespaces, [], "all namespaces by default");
  t.end();
});

t.test("flags win over the environment", (t) => {
  const s = parse(
    [
      "--kubeconfig=/k",
      "--namespace",
      "x",
      "--namespace",
      "y,z",
      "--leader-election-namespace",
      "ops",
      "--leader-election-id",
      "lease",
      "--waiter-port",
      "9443",
      "--metrics-port",
      "9090",
      "--log-level",
      "warn",
      "--no-leader-election",
      "--no-watch-nodes",
      "--probe-pull-timeout=900",
      "--job-active-deadline=3600",
      "--job-ttl-after-finished=0",
    ],
    { ...env, KUBECONFIG: "/tmp/kc", WATCH_NAMESPACES: "a", LOG_LEVEL: "debug" },
  );
  t.match(s, {
    kubeconfig: "/k",
    namespaces: ["x", "y", "z"],
    leaderElectionNamespace: "ops",
    leaderElectionId: "lease",
    waiterPort: 9443,
    metricsPort: 9090,
    logLevel: "warn",
    leaderElection: false,
    watchNodes: false,
    probePullTimeoutSeconds: 900,
    jobDefaults: { activeDeadlineSeconds: 3600, ttlSecondsAfterFinished: 0 },
  });
  t.end();
});

t.test("bad flags are usage errors naming the flag", (t) => {
  const cases: [string[], RegExp][] = [
    [["--waiter-port", "http"], /--waiter-port: expected an integer between 0 and 65535/],
    [["--metrics-port", "70000"], /--metrics-port: expected an integer/],
    [["--log-level", "loud"], /--log-level: unknown level "loud"/],
    [["--lease-duration", "5", "--renew-deadline", "6"], /must be greater than renewDeadlineSeconds/],
    [["--job-active-deadline", "0"], /--job-active-deadline: expected an integer between 1 and 2147483647, got "0"/],
    [["--job-ttl-after-finished", "1h"], /--job-ttl-after-finished: expected an integer between 0 and/],
    [["--probe-pull-timeout", "-1"], /--probe-pull-timeout: expected an integer between 1 and/],
    [["--bogus"], /unknown option '--bogus'/],
    [["extra"], /too many arguments/],
  ];
  for (const [argv, message] of cases) {
    try {
      parseReconcilerArgs(argv, env);
      t.fail(`${argv.join(" ")} accepted`);
    } catch (error) {
      t.ok(error instanceof UsageError, `${argv.join(" ")} is a usage error`);
      t.match((error as Error).message, message);
    }
  }
  t.end();
});

class FakeController extends FakeOracle implements ControllerLike {
  writing = false;
  stopped = false;
  started = false;
  #release!: () => void;
  readonly #start = new Promise<void>((resolve) => (this.#release = resolve));
  start(): Promise<void> {
    return this.#start;
  }
  finishSync(): void {
    this.started = true;
    this.#release();
  }
  startWriting(): void {
    this.writing = true;
  }
  stopWriting(): void {
    this.writing = false;
  }
  stop(): Promise<void> {
    this.stopped = true;
    return Promise.resolve();
  }
  synced(): boolean {
    return this.started;
  }
}

t.test("wires servers, controller and shutdown (no leader election)", async (t) => {
  const settings = parse([
    "--no-leader-election",
    "--bind-address",
    "127.0.0.1",
    "--waiter-port",
    String(await freePort()),
    "--metrics-port",
    String(await freePort()),
  ]);
  const controller = new FakeController();
  const starting = runReconciler(settings, new KubeConfig(), () => controller, createLogger({ level: "silent" }));
  const status = async (port: number, path: string) => {
    const res = await request(`http://127.0.0.1:${port}${path}`);
    await res.body.text();
    return res.statusCode;
  };
  // Servers answer while the caches sync.
  let healthz = 0;
  const deadline = Date.now() + 30_000;
  while (healthz !== 200 && Date.now() < deadline) {
    healthz = await status(settings.metricsPort, "/healthz").catch(() => 0);
    if (healthz !== 200) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.equal(healthz, 200, "live before the caches sync");
  t.equal(await status(settings.metricsPort, "/readyz"), 503, "not ready before the caches sync");
  t.notOk(controller.writing, "no writes before sync");
  controller.finishSync();
  const running = await starting;
  t.equal(await status(settings.metricsPort, "/readyz"), 200, "ready once synced");
  t.ok(controller.writing, "writes without leader election");
  controller.set("web-1", { ready: true, reason: "Migrated", message: "ok" });
  const wait = await request(
    `http://127.0.0.1:${settings.waiterPort}/v1/wait?namespace=shop&pod=web-1&migrator=web&container=app`,
  );
  t.same(
    await wait.body.json(),
    { ready: true, reason: "Migrated", message: "ok" },
    "waiter API answers from the controller",
  );
  await running.shutdown("test");
  await running.done;
  t.notOk(controller.writing, "stopped writing");
  t.ok(controller.stopped, "controller stopped");
  await t.rejects(status(settings.metricsPort, "/healthz"), "metrics server closed");
  await t.rejects(status(settings.waiterPort, "/v1/wait"), "waiter API closed");
});
