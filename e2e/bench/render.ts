// Render benchmark: the plugin's `generate` as Argo CD runs it (the bundle, a fresh process per run,
// cwd = the application directory, Argo CD's environment), on generated trees, against
// `kubectl kustomize` on the same tree, a floor (read + parse + serialise with the fastest YAML
// library, and with the `yaml` package the plugin parses with) and `node -e 0`.
//
// Runs are interleaved (one of each command per round), so load from other processes on the machine
// spreads over every column instead of skewing one. A first, uncounted round warms the page cache and
// checks that every command saw every object.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { tools } from "../../plugin/test/tools.ts";
import { measure } from "./measure.ts";
import type { RunResult } from "./measure.ts";
import { linearFit, summarize } from "./stats.ts";
import type { Summary } from "./stats.ts";
import { megabytes, ratio, spreadSeconds, verdict } from "./table.ts";
import type { Table } from "./table.ts";
import { writeTree } from "./tree.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../..");
export const PLUGIN_BUNDLE = path.join(repoRoot, "plugin/dist/digest-migrations-plugin.mjs");
const FLOOR = path.join(here, "floor.mjs");

/** Above this size, `kubectl kustomize` and the plugin on a Kustomize source run `heavyRuns` times (see below). */
export const HEAVY_OBJECTS = 2000;

/** The render targets, as ratios. */
export const RENDER_TARGETS = { vsKustomize: 0.25, vsFloor: 1.5 } as const;

export interface RenderOptions {
  sizes: number[];
  runs: number;
  /** Runs of the two Kustomize columns above HEAVY_OBJECTS (no warm-up: the first run is the check); default `runs`. */
  heavyRuns?: number;
  /** Trees are written here (a scratch directory). */
  workDir: string;
  log: (line: string) => void;
}

type Command =
  | "pluginPlain"
  | "pluginKustomize"
  | "pluginPlainCached"
  | "pluginKustomizeCached"
  | "kubectl"
  | "floorJsYaml"
  | "floorYaml"
  | "nodeBare";

/** The plugin's rows: which tree, and whether Node's compile cache is on (as in the sidecar image). */
const PLUGIN_ROWS = [
  { source: "plain", command: "pluginPlain", kustomize: false },
  { source: "Kustomize", command: "pluginKustomize", kustomize: true },
  { source: "plain, compile cache", command: "pluginPlainCached", kustomize: false },
  { source: "Kustomize, compile cache", command: "pluginKustomizeCached", kustomize: true },
] as const satisfies readonly { source: string; command: Command; kustomize: boolean }[];

export interface SizeResult {
  objects: number;
  bytes: number;
  time: Record<Command, Summary>;
  rssKb: Record<Command, Summary>;
}

export interface RenderResult {
  sizes: SizeResult[];
  tables: Table[];
}

/** Documents in a `---`-separated stream (the plugin's JSON stream, each document opened by `---`; kubectl's YAML; the floor's JSON). */
function countDocuments(stream: string): number {
  if (stream.trim() === "") return 0;
  const separators = stream.match(/^---$/gm)?.length ?? 0;
  return stream.startsWith("---\n") ? separators : separators + 1;
}

export async function renderBench(options: RenderOptions): Promise<RenderResult> {
  const { kubectl, bin } = tools();
  const node = process.execPath;
  const heavyRuns = options.heavyRuns ?? options.runs;
  const results: SizeResult[] = [];
  for (const objects of options.sizes) {
    // Argo CD runs generate in <repository>/<source path>; the repository root bounds symlinks.
    const repo = path.join(options.workDir, `repo-${objects}`);
    const plain = writeTree(path.join(repo, "apps", "plain"), objects, false);
    const kustomized = writeTree(path.join(repo, "apps", "kustomize"), objects, true);
    const argoEnv = (sourcePath: string): NodeJS.ProcessEnv => ({
      // No kustomize binary on PATH: the plugin falls back to `kubectl kustomize`, the very command compared.
      PATH: `${bin}:/usr/local/bin:/usr/bin:/bin`,
      HOME: process.env["HOME"],
      ARGOCD_APP_NAME: "bench",
      ARGOCD_APP_NAMESPACE: "bench",
      ARGOCD_APP_REVISION: "0123456789abcdef0123456789abcdef01234567",
      ARGOCD_APP_SOURCE_PATH: sourcePath,
      ARGOCD_APP_SOURCE_REPO_URL: "https://git.example/bench.git",
      ARGOCD_APP_SOURCE_TARGET_REVISION: "HEAD",
      KUBE_VERSION: "1.33.0",
      KUBE_API_VERSIONS: "v1,apps/v1,batch/v1,migrations.coderanger.net/v1beta1",
      ARGOCD_APP_PARAMETERS: "[]",
      // kubectl kustomize needs minutes for 10,000 objects on a loaded machine; the default bound is 120 s.
      DIGEST_MIGRATIONS_RENDER_TIMEOUT_SECONDS: "1800",
    });
    let keepStdout = true;
    // The compile cache as the sidecar image has it (Dockerfile.plugin): produced by an earlier run of
    // the same bundle (here the warm-up round), then only read.
    const cache = { NODE_COMPILE_CACHE: path.join(options.workDir, "compile-cache") };
    const plugin = (dir: string, env: NodeJS.ProcessEnv): Promise<RunResult> =>
      measure(node, [PLUGIN_BUNDLE, "generate"], { cwd: dir, env, keepStdout });
    const commands: Record<Command, () => Promise<RunResult>> = {
      pluginPlain: () => plugin(plain.dir, argoEnv("apps/plain")),
      pluginKustomize: () => plugin(kustomized.dir, argoEnv("apps/kustomize")),
      pluginPlainCached: () => plugin(plain.dir, { ...argoEnv("apps/plain"), ...cache }),
      pluginKustomizeCached: () => plugin(kustomized.dir, { ...argoEnv("apps/kustomize"), ...cache }),
      kubectl: () =>
        measure(kubectl, ["kustomize", ".", "--load-restrictor", "LoadRestrictionsRootOnly"], {
          cwd: kustomized.dir,
          env: { PATH: "/usr/bin:/bin", HOME: process.env["HOME"] },
          keepStdout,
        }),
      floorJsYaml: () => measure(node, [FLOOR, "js-yaml", plain.dir], { cwd: here, keepStdout }),
      floorYaml: () => measure(node, [FLOOR, "yaml", plain.dir], { cwd: here, keepStdout }),
      nodeBare: () => measure(node, ["-e", "0"], { keepStdout }),
    };
    const names = Object.keys(commands) as Command[];

    // kubectl kustomize grows faster than linearly (minutes at 10,000 objects): above HEAVY_OBJECTS the
    // Kustomize columns skip the warm-up (their first run is the check) and run `heavyRuns` times.
    const heavy = (name: Command): boolean =>
      objects > HEAVY_OBJECTS && (name === "kubectl" || name === "pluginKustomize" || name === "pluginKustomizeCached");
    const check = (name: Command, run: RunResult): void => {
      const docs = countDocuments(run.stdout);
      if (name !== "nodeBare" && docs !== objects) {
        throw new Error(`render benchmark: ${name} on ${objects} objects printed ${docs} documents`);
      }
    };
    options.log(`render: ${objects} objects (${(plain.bytes / 1e6).toFixed(1)} MB, ${plain.files} files): warm-up`);
    for (const name of names) if (!heavy(name)) check(name, await commands[name]());

    const samples = Object.fromEntries(names.map((n) => [n, { time: [] as number[], rss: [] as number[] }])) as Record<
      Command,
      { time: number[]; rss: number[] }
    >;
    const rounds = Math.max(options.runs, names.some(heavy) ? heavyRuns : 0);
    for (let round = 1; round <= rounds; round++) {
      options.log(`render: ${objects} objects: round ${round}/${rounds}`);
      for (const name of names) {
        if (heavy(name) ? round > heavyRuns : round > options.runs) continue;
        keepStdout = heavy(name) && round === 1;
        const run = await commands[name]();
        if (keepStdout) check(name, run);
        samples[name].time.push(run.wallMs);
        samples[name].rss.push(run.peakRssKb);
      }
    }
    results.push({
      objects,
      bytes: plain.bytes,
      time: Object.fromEntries(names.map((n) => [n, summarize(samples[n].time)])) as Record<Command, Summary>,
      rssKb: Object.fromEntries(names.map((n) => [n, summarize(samples[n].rss)])) as Record<Command, Summary>,
    });
  }
  return { sizes: results, tables: renderTables(results, options.runs, heavyRuns) };
}

function renderTables(results: SizeResult[], runs: number, heavyRuns: number): Table[] {
  const time: Table = {
    title: "Render time (wall clock, fresh process per run)",
    columns: [
      "objects",
      "source",
      "plugin generate",
      "kubectl kustomize",
      "floor: js-yaml",
      "floor: yaml pkg",
      "node -e 0",
      "plugin's own work",
      "own ÷ kubectl",
      "own ÷ floor",
      `≤ ${RENDER_TARGETS.vsKustomize}× kubectl`,
      `≤ ${RENDER_TARGETS.vsFloor}× floor`,
    ],
    rows: [],
    notes: [
      `median (min–max) of ${runs} runs after one warm-up run; commands interleaved round by round; above ` +
        `${HEAVY_OBJECTS} objects kubectl kustomize and the plugin on the Kustomize tree run ${heavyRuns} ` +
        `time${heavyRuns === 1 ? " (no spread)" : "s"} without a warm-up, as kubectl kustomize takes minutes there.`,
      "plugin's own work: plugin generate minus kubectl kustomize for a Kustomize source (the plugin runs it), " +
        "the whole run for a plain directory; the targets apply to it.",
      "compile cache: NODE_COMPILE_CACHE set to a cache written by the warm-up round's run of the same bundle, " +
        "as the sidecar image writes one at build time (Dockerfile.plugin); the other rows run without one.",
      "floor: a bare `node floor.mjs` — read every file, parse with js-yaml (loadAll) or the yaml package " +
        "(parseAllDocuments, for comparison; the plugin uses js-yaml), write the JSON stream; Node start-up included, as in every column.",
    ],
  };
  const rss: Table = {
    title: "Render peak RSS",
    columns: [
      "objects",
      "input",
      "plugin (plain)",
      "plugin (Kustomize)",
      "kubectl kustomize",
      "floor: js-yaml",
      "floor: yaml pkg",
      "node -e 0",
    ],
    rows: [],
    notes: [
      "median of the runs' peak RSS; for the plugin on a Kustomize source, the larger of node and its kubectl child.",
    ],
  };
  for (const r of results) {
    const floor = r.time.floorJsYaml.median;
    const kubectl = r.time.kubectl.median;
    for (const row of PLUGIN_ROWS) {
      const { source } = row;
      const plugin = r.time[row.command];
      // One run each of two commands taking minutes on a busy machine is too noisy to subtract.
      const subtractable = !row.kustomize || (r.time.kubectl.n > 1 && plugin.median >= kubectl);
      const own = !row.kustomize ? plugin.median : subtractable ? plugin.median - kubectl : Number.NaN;
      const check = (ok: boolean): string => (Number.isFinite(own) ? verdict(ok) : "–");
      time.rows.push([
        String(r.objects),
        source,
        spreadSeconds(plugin),
        spreadSeconds(r.time.kubectl),
        spreadSeconds(r.time.floorJsYaml),
        spreadSeconds(r.time.floorYaml),
        spreadSeconds(r.time.nodeBare),
        Number.isFinite(own) ? `${(own / 1000).toFixed(2)} s` : "–",
        ratio(own / kubectl),
        ratio(own / floor),
        check(own <= RENDER_TARGETS.vsKustomize * kubectl),
        check(own <= RENDER_TARGETS.vsFloor * floor),
      ]);
    }
    rss.rows.push([
      String(r.objects),
      `${(r.bytes / 1e6).toFixed(1)} MB`,
      megabytes(r.rssKb.pluginPlain.median),
      megabytes(r.rssKb.pluginKustomize.median),
      megabytes(r.rssKb.kubectl.median),
      megabytes(r.rssKb.floorJsYaml.median),
      megabytes(r.rssKb.floorYaml.median),
      megabytes(r.rssKb.nodeBare.median),
    ]);
  }
  return [time, rss];
}

/** One line per figure: growth per 1,000 objects, fixed cost, and how straight the line is. */
export function renderGrowth(results: SizeResult[]): string[][] {
  const rows: string[][] = [];
  const series: [string, Command, "time" | "rssKb"][] = [
    ["render time, plugin (plain)", "pluginPlain", "time"],
    ["render time, plugin (Kustomize)", "pluginKustomize", "time"],
    ["render time, kubectl kustomize", "kubectl", "time"],
    ["render time, floor (js-yaml)", "floorJsYaml", "time"],
    ["peak RSS, plugin (plain)", "pluginPlain", "rssKb"],
    ["peak RSS, plugin (Kustomize)", "pluginKustomize", "rssKb"],
    ["peak RSS, kubectl kustomize", "kubectl", "rssKb"],
    ["peak RSS, floor (js-yaml)", "floorJsYaml", "rssKb"],
  ];
  for (const [label, command, metric] of series) {
    const fit = linearFit(results.map((r) => [r.objects / 1000, r[metric][command].median] as const));
    const unit =
      metric === "time"
        ? (v: number): string => `${(v / 1000).toFixed(3)} s`
        : (v: number): string => `${(v / 1024).toFixed(1)} MB`;
    rows.push([label, `${unit(fit.slope)} per 1,000 objects`, unit(fit.intercept), r2(fit.r2)]);
  }
  return rows;
}

export function r2(value: number): string {
  return Number.isFinite(value) ? value.toFixed(3) : "–";
}
