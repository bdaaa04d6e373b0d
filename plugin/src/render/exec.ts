// Running a renderer binary (helm, kustomize, kubectl) safely: found on PATH, argv only (no shell), a
// scrubbed environment (no Argo CD variables or credentials, KUBECONFIG pointing nowhere so nothing can
// reach a cluster, empty plugin directories so no repository- or user-supplied code runs), a wall-clock
// limit and a cap on output size. Failures become one line naming the command and its first error line.
import { execFile } from "node:child_process";
import { access, constants, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PluginError } from "../errors.ts";
import type { Env } from "../parameters.ts";

/** The first executable called `name` on PATH, or undefined. */
export async function findOnPath(name: string, env: Env): Promise<string | undefined> {
  for (const dir of (env["PATH"] ?? "").split(path.delimiter)) {
    if (dir === "") continue;
    const candidate = path.join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next PATH entry
    }
  }
  return undefined;
}

/** A scratch HOME for one renderer run, removed afterwards. */
export interface Scratch {
  dir: string;
  env: Record<string, string>;
}

export async function withScratch<T>(pathEnv: string, body: (scratch: Scratch) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), "digest-migrations-"));
  try {
    const sub = async (name: string): Promise<string> => {
      const p = path.join(dir, name);
      await mkdir(p);
      return p;
    };
    const empty = await sub("plugins");
    const env: Record<string, string> = {
      PATH: pathEnv,
      HOME: dir,
      TMPDIR: await sub("tmp"),
      KUBECONFIG: "/dev/null",
      XDG_CONFIG_HOME: await sub("config"),
      XDG_CACHE_HOME: await sub("cache"),
      XDG_DATA_HOME: await sub("data"),
      HELM_PLUGINS: empty,
      HELM_CACHE_HOME: path.join(dir, "cache", "helm"),
      HELM_CONFIG_HOME: path.join(dir, "config", "helm"),
      HELM_DATA_HOME: path.join(dir, "data", "helm"),
      KUSTOMIZE_PLUGIN_HOME: empty,
    };
    return await body({ dir, env });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
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
        const e = error as NodeJS.ErrnoException & { killed?: boolean; code?: number | string };
        let reason: string;
        if (e.code === "ERR_CHILD_PROCESS_STDIO_MAXBUFFER") {
          reason = `output over the limit of ${options.maxOutput} bytes (max-total-size)`;
        } else if (e.killed === true) {
          reason = `timed out after ${Math.round(options.timeoutMs / 1000)}s`;
        } else if (typeof e.code === "string") {
          reason = e.message;
        } else {
          reason = `exit ${String(e.code)}: ${firstErrorLine(stderr) ?? "no error output"}`;
        }
        reject(new PluginError(`\`${label}\` failed: ${reason}`));
      },
    );
  });
}

/** The most telling line of a renderer's stderr: its first "Error:" line, else its first line. */
function firstErrorLine(stderr: string): string | undefined {
  const lines = stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  return lines.find((l) => /^error\b/i.test(l)) ?? lines[0];
}
