// Waiter footprint: the waiter bundle (reconciler/dist/waiter.mjs, what the init container runs)
// against a tiny local HTTP server standing in for the waiter API.
//   - "ready at once": the server answers ready to the first request. Start-up = spawn → first
//     request at the server; total = spawn → exit; peak RSS.
//   - "held, then ready": the server holds the long-poll (as the real API does) and answers ready
//     after a delay. Release = the answer's write → the waiter process reaped.
// Compared with `node -e 0`, the least a Node process costs.
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { measure } from "./measure.ts";
import { summarize } from "./stats.ts";
import type { Summary } from "./stats.ts";
import { megabytes, spreadMillis, verdict } from "./table.ts";
import type { Table } from "./table.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
export const WAITER_BUNDLE = path.resolve(here, "../../reconciler/dist/waiter.mjs");
export const WAITER_TARGETS = { rssMb: 40, releaseMs: 1000 } as const;
/** How long the server holds the long-poll before answering ready in the "held" scenario. */
const HOLD_MS = 300;

export interface WaiterOptions {
  runs: number;
  log: (line: string) => void;
}

export interface WaiterResult {
  startup: Summary;
  totalReady: Summary;
  rssReadyKb: Summary;
  release: Summary;
  rssHeldKb: Summary;
  nodeBare: { time: Summary; rssKb: Summary };
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
    const args = [WAITER_BUNDLE, "--api", api.url, "--migrator", "web-migrations", "--container", "app"];
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
      nodeBare: { time: summarize(bareTime), rssKb: summarize(bareRss) },
    };
    return { ...result, tables: [waiterTable(result, options.runs)] };
  } finally {
    await api.close();
  }
}

function waiterTable(r: Omit<WaiterResult, "tables">, runs: number): Table {
  const rssOk = (kb: number): string => verdict(kb / 1024 <= WAITER_TARGETS.rssMb);
  return {
    title: "Waiter footprint (reconciler/dist/waiter.mjs against a local HTTP server)",
    columns: ["figure", "waiter", "node -e 0", "target", "met"],
    rows: [
      ["start-up: spawn → first request", spreadMillis(r.startup), "–", "–", "–"],
      ["ready at once: spawn → exit", spreadMillis(r.totalReady), spreadMillis(r.nodeBare.time), "–", "–"],
      [
        `held ${HOLD_MS} ms, then ready: answer → exit`,
        spreadMillis(r.release),
        "–",
        `≤ ${WAITER_TARGETS.releaseMs} ms`,
        verdict(r.release.max <= WAITER_TARGETS.releaseMs),
      ],
      [
        "peak RSS, ready at once",
        megabytes(r.rssReadyKb.median),
        megabytes(r.nodeBare.rssKb.median),
        `≤ ${WAITER_TARGETS.rssMb} MB`,
        rssOk(r.rssReadyKb.max),
      ],
      [
        `peak RSS, held ${HOLD_MS} ms`,
        megabytes(r.rssHeldKb.median),
        megabytes(r.nodeBare.rssKb.median),
        `≤ ${WAITER_TARGETS.rssMb} MB`,
        rssOk(r.rssHeldKb.max),
      ],
    ],
    notes: [
      `median (min–max) of ${runs} runs; RSS: median, checked against the target at its maximum.`,
      "the waiter's footprint does not grow with the cluster: it asks about one pod and holds one connection.",
    ],
  };
}

/** Waiter figures do not depend on input size: one pod, one connection. */
export function waiterGrowth(): string[][] {
  return [["waiter RSS and release time", "constant: one pod, one connection, whatever the cluster size", "–", "–"]];
}
