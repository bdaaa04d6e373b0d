// Waiter footprint: the waiter bundle (reconciler/dist/waiter.mjs, what the init container runs)
// against a tiny local HTTP server standing in for the waiter API.
//   - "ready at once": the server answers ready to the first request. Start-up = spawn → first
//     request at the server; total = spawn → exit; peak RSS.
//   - "held, then ready": the server holds the long-poll (as the real API does) and answers ready
//     after a delay. Release = the answer's write → the waiter process reaped.
// Compared with `node -e 0`, the least a Node process costs. The waiter runs as the image runs it: the
// bundle alone in an `app/` directory (the image's /app, no package.json or checkout around it), started
// with the node flags of the image's `digest-migrations-waiter` wrapper (read from Dockerfile.reconciler).
// For comparison, one more run per round starts reconciler/dist/waiter.mjs in place, without the flags.
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { measure } from "./measure.ts";
import { summarize } from "./stats.ts";
import type { Summary } from "./stats.ts";
import { ratio, spreadMillis, verdict } from "./table.ts";
import type { Table } from "./table.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
export const WAITER_BUNDLE = path.resolve(here, "../../reconciler/dist/waiter.mjs");
const DOCKERFILE = path.resolve(here, "../../Dockerfile.reconciler");
/** Peak RSS at most this many times `node -e 0`'s in the same run; release within this long. */
export const WAITER_TARGETS = { rssRatio: 1.1, releaseMs: 1000 } as const;

/** The node flags of the image's waiter wrapper (`exec node <flags> /app/waiter.mjs "$@"`). */
export function shippedWaiterFlags(dockerfile = readFileSync(DOCKERFILE, "utf8")): string[] {
  const m = /exec node ((?:--\S+ )*)\/app\/waiter\.mjs "\$@"/.exec(dockerfile);
  if (!m) throw new Error(`${DOCKERFILE}: no "exec node … /app/waiter.mjs" wrapper`);
  return (m[1] ?? "").split(" ").filter(Boolean);
}
/** How long the server holds the long-poll before answering ready in the "held" scenario. */
const HOLD_MS = 300;

export interface WaiterOptions {
  runs: number;
  /** A scratch directory: the bundle is copied to <workDir>/app/waiter.mjs. */
  workDir: string;
  log: (line: string) => void;
}

export interface WaiterResult {
  startup: Summary;
  totalReady: Summary;
  rssReadyKb: Summary;
  release: Summary;
  rssHeldKb: Summary;
  /** The bundle run in place (reconciler/dist, inside the checkout), without the image's flags. */
  rssInPlaceKb: Summary;
  nodeBare: { time: Summary; rssKb: Summary };
  flags: string[];
  tables: Table[];
}

interface FakeApi {
  url: string;
  /** performance.now() of each request's arrival, in order. */
  arrivals: number[];
  /** performance.now() when each ready answer was written. */
  answeredAt: number[];
  /** How long to hold a request before answering ready (0: at once). */
  holdMs: number;
  close(): Promise<void>;
}

async function fakeApi(): Promise<FakeApi> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const api: FakeApi = {
    url: `http://127.0.0.1:${port}`,
    arrivals: [],
    answeredAt: [],
    holdMs: 0,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    api.arrivals.push(performance.now());
    if (!req.url?.startsWith("/v1/wait?")) {
      res.writeHead(404).end();
      return;
    }
    const body = JSON.stringify({
      ready: true,
      reason: "Migrated",
      message: "the digest is migrated",
      digest: `sha256:${"a".repeat(64)}`,
    });
    const answer = (): void => {
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body, () => api.answeredAt.push(performance.now()));
    };
    if (api.holdMs > 0) setTimeout(answer, api.holdMs);
    else answer();
  });
  return api;
}

export async function waiterBench(options: WaiterOptions): Promise<WaiterResult> {
  const api = await fakeApi();
  try {
    const app = path.join(options.workDir, "app");
    mkdirSync(app, { recursive: true });
    const bundle = path.join(app, "waiter.mjs");
    copyFileSync(WAITER_BUNDLE, bundle);
    const flags = shippedWaiterFlags();
    const waiterArgs = ["--api", api.url, "--migrator", "web-migrations", "--container", "app"];
    const args = [...flags, bundle, ...waiterArgs];
    const inPlaceArgs = [WAITER_BUNDLE, ...waiterArgs];
    const env = {
      PATH: "/usr/bin:/bin",
      POD_NAME: "web-7d9f8b6c5-x2x9q",
      POD_NAMESPACE: "bench",
      POD_UID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
    };
    const startup: number[] = [];
    const totalReady: number[] = [];
    const rssReady: number[] = [];
    const release: number[] = [];
    const rssHeld: number[] = [];
    const rssInPlace: number[] = [];
    const bareTime: number[] = [];
    const bareRss: number[] = [];
    // One uncounted warm-up run of each, for the page cache.
    await measure(process.execPath, args, { env });
    await measure(process.execPath, ["-e", "0"]);
    for (let round = 1; round <= options.runs; round++) {
      options.log(`waiter: round ${round}/${options.runs}`);
      api.holdMs = 0;
      let spawnedAt = 0;
      const before = api.arrivals.length;
      const ready = await measure(process.execPath, args, { env, onSpawn: (at) => (spawnedAt = at) });
      const arrived = api.arrivals[before];
      if (arrived === undefined) throw new Error("waiter benchmark: the waiter exited without asking the API");
      startup.push(arrived - spawnedAt);
      totalReady.push(ready.wallMs);
      rssReady.push(ready.peakRssKb);

      api.holdMs = HOLD_MS;
      const answeredBefore = api.answeredAt.length;
      const held = await measure(process.execPath, args, { env });
      const answered = api.answeredAt[answeredBefore];
      if (answered === undefined) throw new Error("waiter benchmark: no ready answer was written");
      release.push(held.exitedAt - answered);
      rssHeld.push(held.peakRssKb);

      rssInPlace.push((await measure(process.execPath, inPlaceArgs, { env })).peakRssKb);

      const bare = await measure(process.execPath, ["-e", "0"]);
      bareTime.push(bare.wallMs);
      bareRss.push(bare.peakRssKb);
    }
    const result = {
      startup: summarize(startup),
      totalReady: summarize(totalReady),
      rssReadyKb: summarize(rssReady),
      release: summarize(release),
      rssHeldKb: summarize(rssHeld),
      rssInPlaceKb: summarize(rssInPlace),
      nodeBare: { time: summarize(bareTime), rssKb: summarize(bareRss) },
      flags,
    };
    return { ...result, tables: [waiterTable(result, options.runs)] };
  } finally {
    await api.close();
  }
}

function waiterTable(r: Omit<WaiterResult, "tables">, runs: number): Table {
  const bare = r.nodeBare.rssKb.median;
  const limit = `≤ ${WAITER_TARGETS.rssRatio}× node -e 0 (${mb(WAITER_TARGETS.rssRatio * bare)})`;
  const rssRow = (label: string, kb: Summary, target: boolean): string[] => [
    label,
    `${mb(kb.median)} (max ${mb(kb.max)})`,
    mb(bare),
    ratio(kb.median / bare),
    target ? limit : "–",
    target ? verdict(kb.max <= WAITER_TARGETS.rssRatio * bare) : "–",
  ];
  const command = `node ${[...r.flags, "app/waiter.mjs"].join(" ")}`;
  return {
    title: "Waiter footprint (reconciler/dist/waiter.mjs against a local HTTP server)",
    columns: ["figure", "waiter", "node -e 0", "÷ node -e 0", "target", "met"],
    rows: [
      ["start-up: spawn → first request", spreadMillis(r.startup), "–", "–", "–", "–"],
      [
        "ready at once: spawn → exit",
        spreadMillis(r.totalReady),
        spreadMillis(r.nodeBare.time),
        ratio(r.totalReady.median / r.nodeBare.time.median),
        "–",
        "–",
      ],
      [
        `held ${HOLD_MS} ms, then ready: answer → exit`,
        spreadMillis(r.release),
        "–",
        "–",
        `≤ ${WAITER_TARGETS.releaseMs} ms`,
        verdict(r.release.max <= WAITER_TARGETS.releaseMs),
      ],
      rssRow("peak RSS, ready at once", r.rssReadyKb, true),
      rssRow(`peak RSS, held ${HOLD_MS} ms`, r.rssHeldKb, true),
      rssRow("peak RSS, ready at once, run in place (reconciler/dist/waiter.mjs, no flags)", r.rssInPlaceKb, false),
    ],
    notes: [
      `median (min–max) of ${runs} runs; RSS: median (and max), checked against the target at its maximum.`,
      `the waiter as the image runs it: \`${command}\` (the wrapper's flags from Dockerfile.reconciler), the bundle copied ` +
        "alone into a scratch app/ directory as in the image's /app; run in place, inside the checkout, Node touches more of its own binary.",
      "the waiter's footprint does not grow with the cluster: it asks about one pod and holds one connection.",
    ],
  };
}

/** Megabytes with one decimal: the target's margin is a few of them. */
function mb(kb: number): string {
  return `${(kb / 1024).toFixed(1)} MB`;
}

/** Waiter figures do not depend on input size: one pod, one connection. */
export function waiterGrowth(): string[][] {
  return [["waiter RSS and release time", "constant: one pod, one connection, whatever the cluster size", "–", "–"]];
}
