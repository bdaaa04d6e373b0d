// Running a renderer binary (helm, kustomize, kubectl) safely: found on PATH, argv only (no shell), a
// scrubbed environment (no Argo CD variables or credentials, KUBECONFIG pointing nowhere so nothing can
// reach a cluster, empty plugin directories so no repository- or user-supplied code runs), a wall-clock
// limit and a cap on output size. A failure names the command and keeps the tool's own reason (rendererReason).
// Finding the binary and preparing its scratch directory use synchronous calls (as source/files.ts does):
// a handful of system calls, each cheaper than a round trip through libuv's thread pool, so the renderer
// is started before its caller's next line runs and the scratch directory is gone as soon as it exits.
import { execFile } from "node:child_process";
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { PluginError } from "../errors.ts";
import type { Env } from "../parameters.ts";

/** The first executable called `name` on PATH, or undefined. */
export function findOnPath(name: string, env: Env): string | undefined {
  for (const dir of (env["PATH"] ?? "").split(path.delimiter)) {
    if (dir === "") continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next PATH entry
    }
  }
  return undefined;
}

/** A scratch HOME for one renderer run, made before `body` runs and removed once it settles. */
export interface Scratch {
  dir: string;
  env: Record<string, string>;
}

export async function withScratch<T>(pathEnv: string, body: (scratch: Scratch) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(tmpdir(), "digest-migrations-"));
  try {
    const sub = (name: string): string => {
      const p = path.join(dir, name);
      mkdirSync(p);
      return p;
    };
    const empty = sub("plugins");
    const env: Record<string, string> = {
      PATH: pathEnv,
      HOME: dir,
      TMPDIR: sub("tmp"),
      KUBECONFIG: "/dev/null",
      XDG_CONFIG_HOME: sub("config"),
      XDG_CACHE_HOME: sub("cache"),
      XDG_DATA_HOME: sub("data"),
      HELM_PLUGINS: empty,
      HELM_CACHE_HOME: path.join(dir, "cache", "helm"),
      HELM_CONFIG_HOME: path.join(dir, "config", "helm"),
      HELM_DATA_HOME: path.join(dir, "data", "helm"),
      KUSTOMIZE_PLUGIN_HOME: empty,
    };
    return await body({ dir, env });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What a renderer printed, for output.ts to read. */
export interface RendererOutput {
  /** The renderer's stdout: a YAML stream. */
  output: string;
  /** What errors call the output (`kubectl kustomize output`, `helm template output`). */
  origin: string;
}

export interface RunOptions {
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  maxOutput: number;
}

/** Runs a command and returns its stdout; a PluginError with a one-line reason on any failure. */
export function run(file: string, args: readonly string[], options: RunOptions): Promise<string> {
  const label = `${path.basename(file)} ${args.slice(0, 2).join(" ")}`.trim();
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        cwd: options.cwd,
        env: options.env,
        timeout: options.timeoutMs,
        maxBuffer: options.maxOutput,
        encoding: "utf8",
        killSignal: "SIGKILL",
        windowsHide: true,
      },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve(stdout);
          return;
        }
        const e = error as NodeJS.ErrnoException & { killed?: boolean; code?: number | string; signal?: string | null };
        let reason: string;
        if (e.code === "ERR_CHILD_PROCESS_STDIO_MAXBUFFER") {
          reason = `output over the limit of ${options.maxOutput} bytes (max-total-size)`;
        } else if (e.killed === true) {
          reason = `timed out after ${Math.round(options.timeoutMs / 1000)}s`;
        } else if (typeof e.code === "string") {
          reason = e.message;
        } else if (typeof e.signal === "string") {
          reason = `killed by ${e.signal}: ${rendererReason(stderr) ?? "no error output"}`;
        } else {
          reason = `exit ${String(e.code)}: ${rendererReason(stderr) ?? "no error output"}`;
        }
        reject(new PluginError(`\`${label}\` failed: ${reason}`));
      },
    );
  });
}

/** The longest reason kept from a renderer's stderr (the Argo CD UI shows it whole). */
export const MAX_REASON = 2000;

// A klog header: severity, date, time, thread, file:line] (kubectl 1.32 reports failures this way:
// `E1201 22:11:34.893949    4260 run.go:72] "command failed" err="…"`, or `err=<` and tab-indented lines
// up to ` >` when the message has several lines).
const KLOG = /^([IWEF])\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]\s]+\] (.*)$/;
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;

/**
 * What a renderer says went wrong, on one line and at most `max` characters: for kubectl's klog lines the
 * `err` value (all of its lines); otherwise everything from the first `error`/`Error:` line on (helm's
 * "Use --debug flag" hint left out), else the whole output. Continuation lines are joined with spaces; a
 * reason longer than `max` keeps its start and its end (where nested errors put the cause).
 */
export function rendererReason(stderr: string, max = MAX_REASON): string | undefined {
  const lines = stderr.replace(ANSI, "").replace(/\r/g, "").split("\n");
  const parts = klogErrors(lines) ?? plainError(lines);
  const joined = parts
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .reduce((acc, l) => (acc === "" ? l : /^[:;,.)]/.test(l) ? `${acc}${l}` : `${acc} ${l}`), "");
  if (joined === "") return undefined;
  return bounded(joined, max);
}

function bounded(text: string, max: number): string {
  if (text.length <= max) return text;
  const head = Math.floor(max / 3);
  const tail = max - head - 40;
  const left = text.length - head - tail;
  return `${text.slice(0, head)} … (${left} characters left out) … ${text.slice(text.length - tail)}`;
}

function klogErrors(lines: readonly string[]): string[] | undefined {
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = KLOG.exec(lines[i] ?? "");
    if (m === null || (m[1] !== "E" && m[1] !== "F")) continue;
    const body = m[2] ?? "";
    const err = /\berr=(<|"(?:[^"\\]|\\.)*")\s*$/.exec(body);
    if (err === null) {
      out.push(unquote(body.replace(/^("(?:[^"\\]|\\.)*")/, (q) => unquote(q))));
    } else if (err[1] === "<") {
      // Multi-line value: the following lines, each indented by one tab, up to a line " >".
      for (i++; i < lines.length && lines[i] !== " >"; i++) out.push((lines[i] ?? "").replace(/^\t/, ""));
    } else {
      out.push(unquote(err[1] ?? ""));
    }
  }
  return out.length > 0 ? out : undefined;
}

function plainError(lines: readonly string[]): string[] {
  const first = lines.findIndex((l) => /^\s*error\b/i.test(l));
  return (first < 0 ? lines : lines.slice(first)).filter(
    (l) => !/^Use --debug flag to render out invalid YAML$/.test(l.trim()),
  );
}

/** A Go-quoted string's text (the escapes klog writes: \" \\ \n \t \uXXXX, \xNN). */
function unquote(quoted: string): string {
  if (!quoted.startsWith('"') || !quoted.endsWith('"')) return quoted;
  return quoted.slice(1, -1).replace(/\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)/g, (_m, e: string) => {
    if (e.startsWith("u") || e.startsWith("x")) return String.fromCharCode(parseInt(e.slice(1), 16));
    return e === "n" ? "\n" : e === "t" ? "\t" : e;
  });
}
