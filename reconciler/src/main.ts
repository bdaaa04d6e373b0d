// The reconciler process: caches + controller on every replica, the waiter API and the metrics
// port on every replica, writes only on the leader (coordination.k8s.io/v1 Lease).
//
//   digest-migrations-reconciler [--kubeconfig PATH] [--namespace NS]... [--waiter-port 8443] [--metrics-port 8080]
//
// Shutdown on SIGTERM/SIGINT: stop writing, release the Lease, answer held waiters, close the
// servers, stop the caches, exit 0 (a second signal exits at once).
//
// Longer than the other files because it holds every flag of the process with its help text, in one
// commander definition, beside the wiring those flags configure; the decisions live in shared/.
import { readFileSync } from "node:fs";
import { Command, Option } from "commander";
import type { KubeConfig } from "@kubernetes/client-node";
import { WAITER_API_PORT, WAITER_AUTH_MODES, WAITER_TOKEN_AUDIENCE } from "@digest-migrations/shared";
import type { JobDefaults, WaiterAuthMode } from "@digest-migrations/shared";
import { UsageError, settingsOrExit } from "./cli.ts";
import { parseCommand } from "./commander.ts";
import { Controller } from "./controller.ts";
import { Kube, loadKubeConfig } from "./kube.ts";
import { createHealthServer } from "./health.ts";
import { defaultIdentity, runLeaderElection, validateTimings } from "./leader.ts";
import { isLogLevel, log } from "./log.ts";
import type { Logger } from "./log.ts";
import { cachesSynced, registry } from "./metrics.ts";
import type { ReleaseOracle } from "./release.ts";
import { createWaiterApi, WAITER_API_DEFAULTS } from "./waiter-api.ts";
import { TokenReviewer } from "./waiter-auth.ts";

export { UsageError } from "./cli.ts";

export const COMMAND = "digest-migrations-reconciler";
export const DEFAULT_METRICS_PORT = 8080;
export const DEFAULT_LEADER_ELECTION_ID = "digest-migrations-reconciler";
/** The largest Kubernetes int32 (Job spec fields). */
const INT32_MAX = 2_147_483_647;
const SERVICE_ACCOUNT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

export interface ReconcilerSettings {
  /** Path of a kubeconfig; undefined means in-cluster (service account). */
  kubeconfig?: string;
  /** Namespaces to watch; empty means all. */
  namespaces: string[];
  leaderElection: boolean;
  leaderElectionNamespace: string;
  leaderElectionId: string;
  leaseDurationSeconds: number;
  renewDeadlineSeconds: number;
  retryPeriodSeconds: number;
  identity: string;
  waiterPort: number;
  metricsPort: number;
  /** Address the servers bind; undefined means every interface. */
  bindAddress?: string;
  /** Share the ports with other replicas on the same network namespace (SO_REUSEPORT). */
  reusePort: boolean;
  logLevel: string;
  waiterMaxTimeoutSeconds: number;
  waiterMaxLongPolls: number;
  waiterRateBurst: number;
  waiterRatePerSecond: number;
  shutdownTimeoutSeconds: number;
  /** Cache nodes (their container runtime explains a probe that cannot answer); off for namespace-scoped installs. */
  watchNodes: boolean;
  /** A probe without an answer after this long is ProbeFailed, unless a Migrator's spec.probePullTimeoutSeconds says otherwise. */
  probePullTimeoutSeconds: number;
  /** Defaults of the Job controls for Migrators that leave them out. */
  jobDefaults: JobDefaults;
  /** Waiter authentication: none, optional (check tokens that are sent) or required. */
  waiterAuth: WaiterAuthMode;
  /** The audience waiter tokens must be for. */
  waiterTokenAudience: string;
}

function number(flag: string, min: number, max: number, integer = true): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n)))
      throw new UsageError(
        `${flag}: expected ${integer ? "an integer" : "a number"} between ${min} and ${max}, got "${value}"`,
      );
    return n;
  };
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [
    ...(previous ?? []),
    ...value
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
  ];
}

/** The namespace the reconciler runs in: $POD_NAMESPACE, else the service account's, else the install default. */
function ownNamespace(env: NodeJS.ProcessEnv): string {
  if (env["POD_NAMESPACE"]) return env["POD_NAMESPACE"];
  try {
    return readFileSync(SERVICE_ACCOUNT_NAMESPACE_FILE, "utf8").trim();
  } catch {
    return "digest-migrations-system";
  }
}

/** Parses argv (without node and script) with environment fallbacks; throws UsageError. */
export function parseReconcilerArgs(argv: string[], env: NodeJS.ProcessEnv): ReconcilerSettings | "exit" {
  const program = new Command(COMMAND)
    .description("Runs digest-keyed database migrations for Migrators and answers waiter init containers.")
    .addOption(new Option("--kubeconfig <path>", "kubeconfig to use (default: $KUBECONFIG, else in-cluster)"))
    .addOption(
      new Option(
        "--namespace <ns>",
        "namespace to watch; repeatable or comma-separated (default: $WATCH_NAMESPACES, else all)",
      ).argParser(collect),
    )
    .addOption(new Option("--no-leader-election", "write without electing a leader (a single replica only)"))
    .addOption(new Option("--leader-election-namespace <ns>", "namespace of the leader Lease (default: own namespace)"))
    .addOption(
      new Option("--leader-election-id <name>", "name of the leader Lease").default(DEFAULT_LEADER_ELECTION_ID),
    )
    .addOption(
      new Option("--lease-duration <seconds>", "leader lease duration")
        .default(15)
        .argParser(number("--lease-duration", 1, 3600)),
    )
    .addOption(
      new Option("--renew-deadline <seconds>", "leader renew deadline")
        .default(10)
        .argParser(number("--renew-deadline", 0.1, 3600, false)),
    )
    .addOption(
      new Option("--retry-period <seconds>", "leader election retry period")
        .default(2)
        .argParser(number("--retry-period", 0.05, 3600, false)),
    )
    .addOption(new Option("--identity <id>", "leader election identity (default: hostname + random suffix)"))
    .addOption(
      new Option("--waiter-port <port>", "port of the waiter API")
        .default(WAITER_API_PORT)
        .argParser(number("--waiter-port", 0, 65535)),
    )
    .addOption(
      new Option("--metrics-port <port>", "port of /healthz, /readyz and /metrics")
        .default(DEFAULT_METRICS_PORT)
        .argParser(number("--metrics-port", 0, 65535)),
    )
    .addOption(new Option("--bind-address <address>", "address the servers listen on (default: all interfaces)"))
    .addOption(
      new Option(
        "--reuse-port",
        "share the ports with other replicas in the same network namespace (SO_REUSEPORT; for hostNetwork)",
      ),
    )
    .addOption(
      new Option(
        "--log-level <level>",
        "fatal, error, warn, info, debug, trace or silent (default: $LOG_LEVEL, else info)",
      ),
    )
    .addOption(
      new Option("--waiter-max-timeout <seconds>", "longest waiter long-poll")
        .default(WAITER_API_DEFAULTS.maxTimeoutSeconds)
        .argParser(number("--waiter-max-timeout", 1, 300)),
    )
    .addOption(
      new Option("--waiter-max-long-polls <n>", "most waiter long-polls held at once")
        .default(WAITER_API_DEFAULTS.maxLongPolls)
        .argParser(number("--waiter-max-long-polls", 1, 1_000_000)),
    )
    .addOption(
      new Option("--waiter-rate-burst <n>", "waiter requests allowed at once per client address")
        .default(WAITER_API_DEFAULTS.rateLimit.burst)
        .argParser(number("--waiter-rate-burst", 1, 1_000_000)),
    )
    .addOption(
      new Option("--waiter-rate <per-second>", "steady waiter requests per second per client address")
        .default(WAITER_API_DEFAULTS.rateLimit.perSecond)
        .argParser(number("--waiter-rate", 0.001, 1_000_000, false)),
    )
    .addOption(
      new Option("--shutdown-timeout <seconds>", "exit anyway this long after SIGTERM")
        .default(25)
        .argParser(number("--shutdown-timeout", 1, 3600)),
    )
    .addOption(
      new Option(
        "--waiter-auth <mode>",
        "none; optional (check a waiter's token when it sends one); required (answer a pod only with its own projected service-account token)",
      )
        .choices(WAITER_AUTH_MODES)
        .default("none"),
    )
    .addOption(
      new Option("--waiter-token-audience <audience>", "the audience waiter tokens must be for").default(
        WAITER_TOKEN_AUDIENCE,
      ),
    )
    .addOption(
      new Option(
        "--no-watch-nodes",
        "do not cache nodes (namespace-scoped installs: nodes are cluster-scoped); a CRI-O probe failure then shows as ProbeFailed",
      ),
    )
    .addOption(
      new Option("--probe-pull-timeout <seconds>", "a probe without an answer after this long is ProbeFailed")
        .default(300)
        .argParser(number("--probe-pull-timeout", 1, INT32_MAX)),
    )
    .addOption(
      new Option(
        "--job-active-deadline <seconds>",
        "activeDeadlineSeconds of migration Jobs whose Migrator sets none (default: none)",
      ).argParser(number("--job-active-deadline", 1, INT32_MAX)),
    )
    .addOption(
      new Option(
        "--job-ttl-after-finished <seconds>",
        "delete a migration Job this long after it succeeded and was recorded, when its Migrator sets no ttlSecondsAfterFinished (default: keep it while its digest is wanted)",
      ).argParser(number("--job-ttl-after-finished", 0, INT32_MAX)),
    );
  if (parseCommand(program, argv) === "exit") return "exit";
  const o = program.opts<{
    kubeconfig?: string;
    namespace?: string[];
    leaderElection: boolean;
    leaderElectionNamespace?: string;
    leaderElectionId: string;
    leaseDuration: number;
    renewDeadline: number;
    retryPeriod: number;
    identity?: string;
    waiterPort: number;
    metricsPort: number;
    bindAddress?: string;
    reusePort?: boolean;
    logLevel?: string;
    waiterMaxTimeout: number;
    waiterMaxLongPolls: number;
    waiterRateBurst: number;
    waiterRate: number;
    shutdownTimeout: number;
    watchNodes: boolean;
    probePullTimeout: number;
    jobActiveDeadline?: number;
    jobTtlAfterFinished?: number;
    waiterAuth: WaiterAuthMode;
    waiterTokenAudience: string;
  }>();
  const logLevel = o.logLevel ?? env["LOG_LEVEL"] ?? "info";
  if (!isLogLevel(logLevel)) throw new UsageError(`--log-level: unknown level "${logLevel}"`);
  try {
    validateTimings(o.leaseDuration, o.renewDeadline, o.retryPeriod);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const settings: ReconcilerSettings = {
    namespaces: o.namespace ?? collect(env["WATCH_NAMESPACES"] ?? "", []),
    leaderElection: o.leaderElection,
    leaderElectionNamespace: o.leaderElectionNamespace ?? ownNamespace(env),
    leaderElectionId: o.leaderElectionId,
    leaseDurationSeconds: o.leaseDuration,
    renewDeadlineSeconds: o.renewDeadline,
    retryPeriodSeconds: o.retryPeriod,
    identity: o.identity ?? defaultIdentity(env),
    waiterPort: o.waiterPort,
    metricsPort: o.metricsPort,
    reusePort: o.reusePort ?? false,
    logLevel,
    waiterMaxTimeoutSeconds: o.waiterMaxTimeout,
    waiterMaxLongPolls: o.waiterMaxLongPolls,
    waiterRateBurst: o.waiterRateBurst,
    waiterRatePerSecond: o.waiterRate,
    shutdownTimeoutSeconds: o.shutdownTimeout,
    watchNodes: o.watchNodes,
    waiterAuth: o.waiterAuth,
    waiterTokenAudience: o.waiterTokenAudience,
    probePullTimeoutSeconds: o.probePullTimeout,
    jobDefaults: {
      ...(o.jobActiveDeadline !== undefined ? { activeDeadlineSeconds: o.jobActiveDeadline } : {}),
      ...(o.jobTtlAfterFinished !== undefined ? { ttlSecondsAfterFinished: o.jobTtlAfterFinished } : {}),
    },
  };
  const kubeconfig = o.kubeconfig ?? env["KUBECONFIG"];
  if (kubeconfig) settings.kubeconfig = kubeconfig;
  if (o.bindAddress) settings.bindAddress = o.bindAddress;
  return settings;
}

/** What the process needs of the controller (the Controller class implements it). */
export interface ControllerLike extends ReleaseOracle {
  start(): Promise<void>;
  startWriting(): void;
  stopWriting(): void;
  stop(): Promise<void>;
  synced(): boolean;
}

export interface RunningReconciler {
  waiterPort: number;
  metricsPort: number;
  /** Resolves when the process has shut down cleanly (after `shutdown()` or a signal). */
  done: Promise<void>;
  shutdown(reason: string): Promise<void>;
}

/**
 * Wires the servers, the controller and the election. Servers start first, so liveness answers
 * while caches sync; readiness follows `controller.synced()`.
 */
export async function runReconciler(
  settings: ReconcilerSettings,
  kube: KubeConfig,
  createController: (kube: KubeConfig, logger: Logger) => ControllerLike,
  logger: Logger = log,
): Promise<RunningReconciler> {
  const controller = createController(kube, logger);
  const health = createHealthServer({
    ready: () => {
      const synced = controller.synced();
      cachesSynced.set(synced ? 1 : 0);
      return synced;
    },
    registry,
    log: logger,
  });
  const waiterApi = createWaiterApi({
    oracle: controller,
    log: logger,
    maxTimeoutSeconds: settings.waiterMaxTimeoutSeconds,
    maxLongPolls: settings.waiterMaxLongPolls,
    rateLimit: { burst: settings.waiterRateBurst, perSecond: settings.waiterRatePerSecond },
    ...(settings.waiterAuth === "none"
      ? {}
      : {
          auth: {
            mode: settings.waiterAuth,
            reviewer: new TokenReviewer({ kube: new Kube(kube), audience: settings.waiterTokenAudience, log: logger }),
          },
        }),
  });
  const metricsAddress = await health.listen(settings.metricsPort, settings.bindAddress, settings.reusePort);
  const waiterAddress = await waiterApi.listen(settings.waiterPort, settings.bindAddress, settings.reusePort);
  logger.info(
    {
      waiterPort: waiterAddress.port,
      metricsPort: metricsAddress.port,
      namespaces: settings.namespaces,
      identity: settings.identity,
      waiterAuth: settings.waiterAuth,
    },
    "servers listening; starting caches",
  );

  const stop = new AbortController();
  let election: Promise<void> = Promise.resolve();
  let shuttingDown: Promise<void> | undefined;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));

  const shutdown = (reason: string): Promise<void> => {
    shuttingDown ??= (async () => {
      logger.info({ reason }, "shutting down");
      stop.abort();
      // The election calls stopWriting (and releases the Lease) before it resolves.
      await election;
      if (!settings.leaderElection) controller.stopWriting();
      await waiterApi.close();
      await controller.stop();
      await health.close();
      logger.info("shut down");
      resolveDone();
    })();
    return shuttingDown;
  };

  await controller.start();
  cachesSynced.set(1);
  logger.info("caches synced");
  if (stop.signal.aborted) return { waiterPort: waiterAddress.port, metricsPort: metricsAddress.port, done, shutdown };
  if (settings.leaderElection) {
    election = runLeaderElection({
      kube,
      namespace: settings.leaderElectionNamespace,
      name: settings.leaderElectionId,
      identity: settings.identity,
      leaseDurationSeconds: settings.leaseDurationSeconds,
      renewDeadlineSeconds: settings.renewDeadlineSeconds,
      retryPeriodSeconds: settings.retryPeriodSeconds,
      onStartedLeading: () => controller.startWriting(),
      onStoppedLeading: () => controller.stopWriting(),
      signal: stop.signal,
      log: logger,
    });
  } else {
    logger.warn("leader election disabled: this replica writes; run only one");
    controller.startWriting();
  }
  return { waiterPort: waiterAddress.port, metricsPort: metricsAddress.port, done, shutdown };
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  const s = settingsOrExit(COMMAND, () => parseReconcilerArgs(argv, process.env));
  if (typeof s === "number") return s;
  log.level = s.logLevel;
  let kube: KubeConfig;
  try {
    if (s.kubeconfig === undefined && !process.env["KUBERNETES_SERVICE_HOST"])
      throw new Error("not running in a cluster (KUBERNETES_SERVICE_HOST unset); pass --kubeconfig or set $KUBECONFIG");
    kube = loadKubeConfig(s.kubeconfig);
  } catch (error) {
    log.fatal(
      `loading ${s.kubeconfig ? `kubeconfig ${s.kubeconfig}` : "the in-cluster configuration"}: ${(error as Error).message}`,
    );
    return 1;
  }
  const state: { running?: RunningReconciler } = {};
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) {
      log.warn({ signal }, "second signal: exiting at once");
      process.exit(1);
    }
    signalled = true;
    // Kubernetes sends SIGKILL after terminationGracePeriodSeconds; exit on our own terms first.
    setTimeout(() => {
      log.error(`shutdown took longer than ${s.shutdownTimeoutSeconds}s; exiting`);
      process.exit(1);
    }, s.shutdownTimeoutSeconds * 1000).unref();
    // Before start-up completes nothing has been written (no leadership yet): exit at once.
    void (state.running ? state.running.shutdown(signal) : Promise.resolve()).then(() => process.exit(0));
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  const running = await runReconciler(
    s,
    kube,
    (kubeconfig, logger) =>
      new Controller({
        kubeconfig,
        namespaces: s.namespaces,
        identity: s.identity,
        log: logger,
        watchNodes: s.watchNodes,
        probeImagePullTimeoutSeconds: s.probePullTimeoutSeconds,
        jobDefaults: s.jobDefaults,
      }),
  );
  state.running = running;
  await running.done;
  return 0;
}

if (import.meta.main) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      log.fatal({ err: error }, `${COMMAND} failed: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(1);
    },
  );
}
