// The reconciler as its own process for the latency and scale benchmarks: the Controller (caches,
// reconcile workers, writing on) and the waiter API, and nothing else of the benchmark, so its RSS
// and CPU time are the reconciler's. Bundled with esbuild before use (as the shipped reconciler is),
// so no TypeScript is compiled at start.
//
//   KUBECONFIG=<file> BENCH_NAMESPACES=a,b [BENCH_WAITER_MAX_LONG_POLLS=N] node reconciler-runner.mjs
//
// The waiter API's per-address rate limit is raised far past the shipped one (burst 20, 5/s): every
// waiter the benchmarks play connects from 127.0.0.1, where in a cluster each pod has its own
// address. BENCH_WAITER_MAX_LONG_POLLS raises the cap on long-polls held at once (shipped default
// 2,000, `--waiter-max-long-polls`) when a benchmark holds more gated pods than that.
//
// stdout, one JSON object per line: {"event":"listening","port":N}, then {"event":"synced","ms":T}
// (T: milliseconds since the process started); every second {"event":"memory", …process.memoryUsage()}
// (bytes: rss, heapTotal, heapUsed, external, arrayBuffers), so the benchmark can split its RSS.
// SIGTERM stops it.
import { Controller, KubeConfig } from "../../reconciler/src/controller.ts";
import { createLogger } from "../../reconciler/src/log.ts";
import { createWaiterApi } from "../../reconciler/src/waiter-api.ts";

async function main(): Promise<void> {
  const kubeconfig = new KubeConfig();
  const file = process.env["KUBECONFIG"];
  if (file === undefined) throw new Error("KUBECONFIG is not set");
  kubeconfig.loadFromFile(file);
  const namespaces = (process.env["BENCH_NAMESPACES"] ?? "").split(",").filter((n) => n !== "");
  const log = createLogger({ level: process.env["BENCH_LOG_LEVEL"] ?? "silent" });
  const controller = new Controller({ kubeconfig, namespaces, identity: "bench", log });
  const maxLongPolls = process.env["BENCH_WAITER_MAX_LONG_POLLS"];
  const api = createWaiterApi({
    oracle: controller,
    log,
    rateLimit: { burst: 100_000, perSecond: 100_000 },
    ...(maxLongPolls === undefined ? {} : { maxLongPolls: Number(maxLongPolls) }),
  });
  setInterval(() => {
    process.stdout.write(`${JSON.stringify({ event: "memory", ...process.memoryUsage() })}\n`);
  }, 1000).unref();
  const address = await api.listen(0, "127.0.0.1");
  process.stdout.write(`${JSON.stringify({ event: "listening", port: address.port })}\n`);
  await controller.start();
  controller.startWriting();
  process.stdout.write(`${JSON.stringify({ event: "synced", ms: performance.now() })}\n`);
  const stop = (): void => {
    void Promise.all([api.close(), controller.stop()]).then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`reconciler-runner: stop failed: ${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `reconciler-runner: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
