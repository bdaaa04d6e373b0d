// `npm run bench`: builds what it needs, runs the benchmarks and prints their tables (Markdown) on
// stdout; progress goes to stderr.
//
//   node e2e/bench/bench.ts [--quick] [--only render,waiter,latency,probe-cost,latency-emulator,scale] [--runs N]
//                           [--sizes 200,2000] [--heavy-runs N] [--scale 40x1000,200x5000] [--migrations N]
//                           [--out file.md]
//
// --quick: smaller trees and fewer runs, a smoke test of the whole pipeline (figures not meaningful).
// latency runs on the real node: in the world DM_WORLD names (or a kept one), else in one it starts and
//   stops itself (e2e/world/connect.ts); --migrations sets its count (default 30; --quick 3), and the
//   rounds of probe-cost (the probe pod as built beside changed ways of it, and an ephemeral container in the
//   held pod, on the real node too). A world the benchmark starts runs with DM_WORLD_FEATURE_GATES, by default
//   EphemeralContainers=true (what probe-cost's ephemeral column needs; a kept world says its own).
// --heavy-runs: runs of kubectl kustomize and the plugin on a Kustomize tree above 2,000 objects (default --runs;
//   at 10,000 objects each takes minutes).
// --scale: the scale benchmark's sizes, Migrators × pods (default 40x1000,200x5000; --quick 10x200);
//          by mutable tag, or already pinned with a ":pinned" suffix (40x1000:pinned).
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { startBenchCluster } from "./control-plane.ts";
import type { BenchCluster } from "./control-plane.ts";
import { nodeLatencyBench } from "./latency.ts";
import { emulatorLatencyBench } from "./latency-emulator.ts";
import { EPHEMERAL_GATE, probeCostBench } from "./probe-cost.ts";
import { rssMethod } from "./measure.ts";
import { scaleBench } from "./scale.ts";
import type { ScaleSize } from "./scale.ts";
import { PLUGIN_BUNDLE, renderBench, renderGrowth } from "./render.ts";
import { formatTable } from "./table.ts";
import type { Table } from "./table.ts";
import { WAITER_BUNDLE, waiterBench, waiterGrowth } from "./waiter.ts";

export const SECTIONS = ["render", "waiter", "latency", "probe-cost", "latency-emulator", "scale"] as const;
export type Section = (typeof SECTIONS)[number];

export interface BenchOptions {
  quick: boolean;
  sections: Section[];
  runs?: number;
  sizes?: number[];
  /** Runs of the Kustomize columns above 2,000 objects (default: runs). */
  heavyRuns?: number;
  /** Scale sizes (Migrators × pods). */
  scaleSizes?: ScaleSize[];
  /** Migrations of the real-node latency benchmark. */
  migrations?: number;
  log: (line: string) => void;
}

export interface BenchReport {
  header: string;
  tables: Table[];
  text: string;
}

function machine(): string {
  const cpus = os.cpus();
  const load = os.loadavg().map((l) => l.toFixed(2));
  return [
    `Node ${process.version}, ${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown CPU"},`,
    `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, load average ${load.join(" ")} at start; peak RSS by ${rssMethod()}.`,
  ].join(" ");
}

/** Builds the bundles when missing (a fresh clone run without `npm run build`). */
async function ensureBundles(log: (line: string) => void): Promise<void> {
  if (existsSync(PLUGIN_BUNDLE) && existsSync(WAITER_BUNDLE)) return;
  log("bench: bundles missing, building");
  await import("../../scripts/build.ts");
  for (const bundle of [PLUGIN_BUNDLE, WAITER_BUNDLE]) {
    if (!existsSync(bundle)) throw new Error(`bench: ${bundle} is still missing after the build`);
  }
}

export async function runBench(options: BenchOptions): Promise<BenchReport> {
  await ensureBundles(options.log);
  const header = machine();
  const tables: Table[] = [];
  const growth: Table = {
    title: "Growth with input size",
    columns: ["figure", "growth", "fixed cost (fit at 0)", "R²"],
    rows: [],
    notes: ["least-squares line through the medians at each size; R² near 1 means linear."],
  };
  const workDir = mkdtempSync(path.join(os.tmpdir(), "dm-bench-"));
  try {
    if (options.sections.includes("render")) {
      const render = await renderBench({
        sizes: options.sizes ?? (options.quick ? [100, 200] : [200, 2000, 10000]),
        runs: options.runs ?? (options.quick ? 2 : 5),
        ...(options.heavyRuns !== undefined ? { heavyRuns: options.heavyRuns } : {}),
        workDir,
        log: options.log,
      });
      tables.push(...render.tables);
      growth.rows.push(...renderGrowth(render.sizes));
    }
    if (options.sections.includes("waiter")) {
      const waiter = await waiterBench({
        runs: options.runs ?? (options.quick ? 3 : 10),
        workDir,
        log: options.log,
      });
      tables.push(...waiter.tables);
      growth.rows.push(...waiterGrowth());
    }
    // Before the first real-node section connects: a world started here gets the gate.
    if (options.sections.includes("probe-cost")) process.env.DM_WORLD_FEATURE_GATES ??= EPHEMERAL_GATE;
    if (options.sections.includes("latency")) {
      const latency = await nodeLatencyBench({
        migrations: options.migrations ?? (options.quick ? 3 : 30),
        log: options.log,
      });
      tables.push(...latency.tables);
    }
    if (options.sections.includes("probe-cost")) {
      tables.push(
        ...(await probeCostBench({ rounds: options.migrations ?? (options.quick ? 3 : 30), log: options.log })),
      );
    }
    if (options.sections.includes("latency-emulator") || options.sections.includes("scale")) {
      const bench: BenchCluster = await startBenchCluster(workDir, options.log);
      try {
        if (options.sections.includes("latency-emulator")) {
          const latency = await emulatorLatencyBench(bench, { migrations: options.quick ? 5 : 50, log: options.log });
          tables.push(...latency.tables);
        }
        if (options.sections.includes("scale")) {
          const scale = await scaleBench(bench, {
            sizes:
              options.scaleSizes ??
              (options.quick
                ? [{ migrators: 10, pods: 200 }]
                : [
                    { migrators: 40, pods: 1000 },
                    { migrators: 200, pods: 5000 },
                  ]),
            idleSeconds: options.quick ? 5 : 30,
            log: options.log,
          });
          tables.push(...scale.tables);
          growth.rows.push(...scale.growth);
        }
      } finally {
        await bench.stop();
      }
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
  if (growth.rows.length > 0) tables.push(growth);
  const text = [`${options.quick ? "Quick run (smoke test; figures not meaningful). " : ""}${header}`, ""]
    .concat(tables.map(formatTable))
    .join("\n");
  return { header, tables, text };
}

function parseSections(value: string | undefined): Section[] {
  if (value === undefined) return [...SECTIONS];
  const wanted = value.split(",").map((s) => s.trim());
  for (const s of wanted) {
    if (!(SECTIONS as readonly string[]).includes(s)) {
      throw new Error(`--only: unknown section "${s}" (expected some of ${SECTIONS.join(", ")})`);
    }
  }
  return wanted as Section[];
}

function positiveInts(flag: string, value: string): number[] {
  return value.split(",").map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag}: "${s}" is not a positive whole number`);
    return n;
  });
}

/**
 * "40x1000,200x5000" → Migrators × pods; each Migrator gets at least one pod. Pods are created by
 * mutable tag (the reconciler probes and pins); a size ending in ":pinned" creates them already pinned.
 */
export function parseScaleSizes(value: string): ScaleSize[] {
  return value.split(",").map((s) => {
    const match = /^\s*(\d+)\s*[x×]\s*(\d+)\s*(:pinned)?\s*$/.exec(s);
    const migrators = Number(match?.[1]);
    const pods = Number(match?.[2]);
    if (match === null || migrators <= 0 || pods < migrators) {
      throw new Error(
        `--scale: "${s}" is not MIGRATORSxPODS[:pinned] with 0 < Migrators ≤ pods (e.g. 40x1000 or 40x1000:pinned)`,
      );
    }
    return match[3] === undefined ? { migrators, pods } : { migrators, pods, pinned: true };
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      runs: { type: "string" },
      sizes: { type: "string" },
      "heavy-runs": { type: "string" },
      scale: { type: "string" },
      migrations: { type: "string" },
      out: { type: "string" },
    },
    strict: true,
    allowPositionals: false,
  });
  const options: BenchOptions = {
    quick: values.quick,
    sections: parseSections(values.only),
    log: (line) => process.stderr.write(`${line}\n`),
  };
  if (values.runs !== undefined) options.runs = positiveInts("--runs", values.runs)[0];
  if (values.sizes !== undefined) options.sizes = positiveInts("--sizes", values.sizes);
  if (values["heavy-runs"] !== undefined) options.heavyRuns = positiveInts("--heavy-runs", values["heavy-runs"])[0];
  if (values.scale !== undefined) options.scaleSizes = parseScaleSizes(values.scale);
  if (values.migrations !== undefined) options.migrations = positiveInts("--migrations", values.migrations)[0];
  const report = await runBench(options);
  process.stdout.write(report.text);
  if (values.out !== undefined) writeFileSync(values.out, report.text);
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}
